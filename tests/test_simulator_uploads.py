"""The simulator's file uploads, SDK config and browser-window rule, as the service has them.

Uploads go in two steps (a presigned POST from the service, then a multipart form straight
to storage without the API key), and a submit may only refer to files that were uploaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from async_dispatch import BadRequestError, UsageError
from async_dispatch.testing import Simulator, SimulatorConfig, serve, simulator

KEY = {"x-api-key": "sim-key"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with simulator(seed=4, max_upload_size=1000) as running:
        yield running


async def presign(http: httpx.AsyncClient, filename: str = "report.pdf") -> dict[str, Any]:
    response = await http.post(
        "/remote-dispatch/generate-file-upload-presigned-post",
        json={"filename": filename},
        headers=KEY,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def upload(
    http: httpx.AsyncClient,
    post: dict[str, Any],
    data: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        post["url"],
        data=post["fields"],
        files={"file": ("report.pdf", data, "application/pdf")},
        headers=headers,
    )


@pytest.mark.anyio
async def test_a_presigned_post_points_at_the_simulators_bucket(sim: Simulator) -> None:
    http = sim.http_client()
    post = await presign(http, "dir/report.pdf")

    assert post["url"] == "http://127.0.0.1/_uploads"
    assert post["fields"]["key"].startswith("uploads/")
    assert post["fields"]["key"].endswith("/dir_report.pdf")
    assert {"policy", "x-amz-signature", "x-amz-algorithm"} <= set(post["fields"])
    assert (await presign(http))["fields"]["key"] != (await presign(http))["fields"]["key"]


@pytest.mark.anyio
async def test_an_uploaded_file_is_stored_and_can_be_attached(sim: Simulator) -> None:
    http = sim.http_client()
    post = await presign(http)
    key = post["fields"]["key"]

    stored = await upload(http, post, b"%PDF-1.4 hello")
    submitted = await http.post(
        "/remote-dispatch",
        json={"prompt": "summarise it", "executionMode": "cloud", "attachment": {"key": key}},
        headers=KEY,
    )

    assert stored.status_code == 204
    assert submitted.status_code == 202, submitted.text
    assert sim.uploads[key].data == b"%PDF-1.4 hello"
    assert sim.uploads[key].content_type == "application/pdf"
    assert sim.uploads[key].api_key_sent is False
    assert "sim-key" not in repr(sim.uploads[key])
    assert sim.stats.uploads == 1
    assert sim.stats.requests["upload_url"] == 1
    assert sim.stats.requests["upload"] == 1


@pytest.mark.anyio
async def test_the_bucket_records_a_key_sent_by_mistake(sim: Simulator) -> None:
    """A real bucket ignores the header (so a client that sends it leaks its key to
    storage); the simulator accepts the file and records it, for tests to catch."""
    http = sim.http_client()
    post = await presign(http)

    assert (await upload(http, post, b"x", headers=KEY)).status_code == 204
    assert sim.uploads[post["fields"]["key"]].api_key_sent is True


@pytest.mark.anyio
async def test_the_bucket_refuses_what_s3_refuses(sim: Simulator) -> None:
    http = sim.http_client()
    post = await presign(http)
    forged = {**post, "fields": {**post["fields"], "x-amz-signature": "0" * 64}}
    unknown = {**post, "fields": {**post["fields"], "key": "uploads/elsewhere/x"}}

    too_big = await upload(http, post, b"x" * 70_000)  # not even read whole
    just_too_big = await upload(http, post, b"x" * 1001)  # max_upload_size is 1000
    assert (await upload(http, await presign(http), b"x" * 1000)).status_code == 204
    bad_signature = await upload(http, forged, b"x")
    unknown_key = await upload(http, unknown, b"x")
    no_file = await http.post(post["url"], data=post["fields"], files={"other": ("a", b"x")})
    not_a_form = await http.post(post["url"], json=post["fields"])
    get = await http.get(post["url"])

    assert too_big.status_code == just_too_big.status_code == 400
    assert "EntityTooLarge" in too_big.text
    assert "EntityTooLarge" in just_too_big.text
    assert bad_signature.status_code == unknown_key.status_code == 403
    assert no_file.status_code == 400
    assert not_a_form.status_code == 412
    assert get.status_code == 405
    assert post["fields"]["key"] not in sim.uploads
    assert len(sim.uploads) == 1


@pytest.mark.anyio
async def test_a_submit_may_only_name_uploaded_files(sim: Simulator) -> None:
    http = sim.http_client()
    post = await presign(http)
    never_uploaded = (await presign(http))["fields"]["key"]
    await upload(http, post, b"data")
    file_ref = {"source": "remoteDispatchUpload", "filename": "r.pdf", "mimeType": "x/y"}

    def body(**fields: Any) -> dict[str, Any]:
        return {"prompt": "x", "executionMode": "cloud", **fields}

    ok = await http.post(
        "/remote-dispatch",
        json=body(inputVariables={"files": [{**file_ref, "id": post["fields"]["key"]}], "n": 1}),
        headers=KEY,
    )
    presigned_only = await http.post(
        "/remote-dispatch", json=body(attachment={"key": never_uploaded}), headers=KEY
    )
    made_up = await http.post(
        "/remote-dispatch",
        json=body(inputVariables={"doc": {**file_ref, "id": "uploads/nope/r.pdf"}}),
        headers=KEY,
    )

    assert ok.status_code == 202, ok.text
    assert presigned_only.status_code == made_up.status_code == 422
    assert presigned_only.json()["detail"][0]["loc"] == ["body", "attachment", "key"]
    assert made_up.json()["detail"][0]["loc"] == ["body", "inputVariables", "doc", "id"]
    assert sim.stats.tasks_created == 1


@pytest.mark.anyio
async def test_another_keys_upload_is_unknown() -> None:
    async with simulator(api_keys={"alice", "bob"}) as sim:
        http = sim.http_client()
        response = await http.post(
            "/remote-dispatch/generate-file-upload-presigned-post",
            json={"filename": "a.txt"},
            headers={"x-api-key": "alice"},
        )
        post = response.json()
        await upload(http, post, b"alice's")
        as_bob = await http.post(
            "/remote-dispatch",
            json={"prompt": "x", "executionMode": "cloud", "attachment": post["fields"]},
            headers={"x-api-key": "bob"},
        )
    assert as_bob.status_code == 422


@pytest.mark.anyio
async def test_presigning_needs_the_key_and_a_filename(sim: Simulator) -> None:
    http = sim.http_client()
    path = "/remote-dispatch/generate-file-upload-presigned-post"

    assert (await http.post(path, json={"filename": "a"})).status_code == 401
    assert (await http.post(path, json={}, headers=KEY)).status_code == 422
    assert (await http.post(path, content=b"{", headers=KEY)).status_code == 422
    assert (await http.get(path, headers=KEY)).status_code == 405


@pytest.mark.anyio
async def test_sdk_config_says_every_version_is_supported(sim: Simulator) -> None:
    http = sim.http_client()

    answer = await http.get("/sdk/config", headers=KEY)
    anonymous = await http.get("/sdk/config")

    assert answer.status_code == 200
    assert answer.json() == {
        "packages": {
            "narada": {"min_required_version": "0.0.1"},
            "narada-pyodide": {"min_required_version": "0.0.1"},
        }
    }
    assert anonymous.status_code == 401


@pytest.mark.anyio
async def test_the_bucket_url_names_the_tcp_port() -> None:
    async with (
        serve(SimulatorConfig()) as running,
        httpx.AsyncClient(base_url=running.base_url) as http,
    ):
        post = await presign(http)
        assert post["url"] == f"{running.origin}/_uploads"
        assert (await upload(http, post, b"over tcp")).status_code == 204
    assert running.simulator.uploads[post["fields"]["key"]].data == b"over tcp"


# -- the browser-window rule ------------------------------------------------------------


@pytest.mark.anyio
async def test_a_bare_submit_is_refused_and_a_complete_one_accepted(sim: Simulator) -> None:
    http = sim.http_client()

    def submit(**fields: Any) -> Any:
        return http.post("/remote-dispatch", json={"prompt": "x", **fields}, headers=KEY)

    bare = await submit()
    explicit_client = await submit(executionMode="client")
    unknown_mode = await submit(executionMode="moon", browserWindowId="w")

    assert bare.status_code == explicit_client.status_code == unknown_mode.status_code == 422
    assert bare.json()["detail"][0]["loc"] == ["body", "browserWindowId"]
    assert "executionMode" in bare.json()["detail"][0]["msg"]
    assert unknown_mode.json()["detail"][0]["loc"] == ["body", "executionMode"]
    for fields in (
        {"executionMode": "cloud"},
        {"executionMode": "cloud_browser"},
        {"browserWindowId": "win-1"},
        {"executionMode": "client", "browserWindowId": "win-1"},
    ):
        assert (await submit(**fields)).status_code == 202, fields
    assert sim.stats.tasks_created == 4


@pytest.mark.anyio
async def test_the_rule_can_be_relaxed() -> None:
    async with simulator(require_browser_window=False) as sim:
        http = sim.http_client()
        bare = await http.post("/remote-dispatch", json={"prompt": "x"}, headers=KEY)
        moon = await http.post(
            "/remote-dispatch", json={"prompt": "x", "executionMode": "moon"}, headers=KEY
        )
        async with sim.client(execution_mode=None) as client:
            with pytest.raises(UsageError):  # the client still knows the service's rule
                await client.submit("x")
    assert bare.status_code == 202
    assert moon.status_code == 422


@pytest.mark.anyio
async def test_the_client_refuses_an_incomplete_submit_before_sending(sim: Simulator) -> None:
    async with sim.client(execution_mode=None) as client:
        with pytest.raises(UsageError) as refused:
            await client.submit("x")
        with pytest.raises(UsageError):
            await client.submit("x", execution_mode="client")
        assert sim.stats.requests["submit"] == 0  # nothing was sent
        assert "execution_mode='cloud'" in str(refused.value)
        assert "DISPATCH_EXECUTION_MODE" in str(refused.value)
        assert "DISPATCH_BROWSER_WINDOW_ID" in str(refused.value)

        # Any one of the ways out is enough; the service checks the rest.
        await client.submit("x", execution_mode="cloud")
        await client.submit("x", browser_window_id="win-1")
        await client.submit("x", extra={"executionMode": "cloud"})
        await client.submit("x", extra={"browserWindowId": "win-1"})
        with pytest.raises(BadRequestError):  # the service refuses modes it does not know
            await client.submit("x", execution_mode="moon", browser_window_id="w")
    assert sim.stats.tasks_created == 4


@pytest.mark.anyio
async def test_the_clients_defaults_apply_when_a_submit_names_neither(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sim.client(execution_mode=None, browser_window_id="win-7") as client:
        with_window = await client.submit("x")
        overridden = await client.submit("x", execution_mode="cloud")
    monkeypatch.setenv("DISPATCH_EXECUTION_MODE", "cloud_browser")
    monkeypatch.setenv("DISPATCH_BROWSER_WINDOW_ID", "win-env")
    async with sim.client(execution_mode=None) as from_env:
        assert from_env.execution_mode == "cloud_browser"
        assert from_env.browser_window_id == "win-env"
        env_task = await from_env.submit("x")
    monkeypatch.setenv("DISPATCH_EXECUTION_MODE", " ")  # blank: unset
    monkeypatch.delenv("DISPATCH_BROWSER_WINDOW_ID")
    async with sim.client(execution_mode=None) as blank:
        assert blank.execution_mode is None
        with pytest.raises(UsageError):
            await blank.submit("x")
    with pytest.raises(UsageError, match="execution_mode must be a str"):
        sim.client(execution_mode=1)

    assert sim.app.tasks[with_window].browser_window_id == "win-7"
    assert sim.app.tasks[overridden].browser_window_id is None
    assert sim.app.tasks[env_task].browser_window_id == "win-env"

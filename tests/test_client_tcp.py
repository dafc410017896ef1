"""The client over real loopback TCP, on the transport it builds for itself."""

from __future__ import annotations

import httpx
import pytest

from async_dispatch import DispatchClient, RetryPolicy, Status, TransportError
from async_dispatch.testing import Durations, OutcomeMix, SimulatorConfig, serve

KEY = "sk-tcp-test"
CONFIG = SimulatorConfig(
    api_keys={KEY}, durations=Durations.fixed(0.0), outcomes=OutcomeMix.only("success"), seed=1
)


@pytest.mark.anyio
async def test_submit_and_read_over_tcp_with_the_clients_own_transport() -> None:
    async with (
        serve(CONFIG) as running,
        DispatchClient(KEY, running.base_url, execution_mode="cloud") as client,
    ):
        request_ids = [await client.submit(f"/Operator task {n}") for n in range(5)]
        statuses = [await client.get_status(request_id) for request_id in request_ids]
    assert {status.status for status in statuses} == {Status.SUCCESS}
    assert running.simulator.stats.tasks_created == 5


@pytest.mark.anyio
async def test_a_proxy_from_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests skip httpx's client machinery only when it has nothing to add: a proxy
    set in the environment must still be used (here one that nothing listens on)."""
    async with serve(CONFIG) as running:
        with monkeypatch.context() as env:
            env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
            env.setenv("NO_PROXY", "")
            async with DispatchClient(
                KEY, running.base_url, retry=RetryPolicy(attempts=1), execution_mode="cloud"
            ) as client:
                with pytest.raises(TransportError) as caught:
                    await client.submit("/Operator through the proxy")
            assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert running.simulator.stats.tasks_created == 0

        async with DispatchClient(KEY, running.base_url, execution_mode="cloud") as client:
            assert await client.submit("/Operator straight there")
        assert running.simulator.stats.tasks_created == 1


@pytest.mark.anyio
async def test_requests_say_who_sends_them() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"requestId": "req_1"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with DispatchClient(
        KEY, "http://127.0.0.1:9", http_client=http, execution_mode="cloud"
    ) as client:
        await client.submit("/Operator hello")
    assert seen[0].headers["user-agent"].startswith("async-remote-dispatch/")
    assert seen[0].headers["x-api-key"] == KEY

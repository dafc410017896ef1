"""The official SDK (``narada`` 0.2.18) against our simulator: run by tests/test_official_sdk.py.

Run with a Python 3.12+ interpreter that has ``narada`` installed (the test builds that
virtual environment), never with ours: this file imports nothing of ``async_dispatch``.
``argv[1]`` is a JSON object mapping each scenario to the base URL of a simulator configured
for it (the SDK sends only its own fields, so a scenario's outcome is its simulator's
config). The key comes from ``NARADA_API_KEY``. It prints one JSON line: what each scenario
saw, and the ``narada`` logger's warnings.

The SDK reads ``NARADA_API_BASE_URL`` when an environment is built (``RemoteBrowserEnvironment``
takes no URL argument), so each environment is built right after pointing it at its scenario.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
from typing import Any

import aiohttp
import narada
from narada_core.actions.models import (
    AgentResponse,
    AgentUsage,
    HitlInputMetadata,
    StructuredOutput,
    TextOutput,
)
from pydantic import BaseModel

WINDOW = "win-official-sdk"
INPUT_KINDS = ("prompt_for_user_input", "prompt_for_user_file", "user_approval")


class Flight(BaseModel):
    airline: str
    price: float
    stops: int


class _Warnings(logging.Handler):
    """Every record of WARNING or above the SDK logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _environment(base_url: str) -> narada.RemoteBrowserEnvironment:
    os.environ["NARADA_API_BASE_URL"] = base_url
    return narada.RemoteBrowserEnvironment(browser_window_id=WINDOW)


def _summary(response: AgentResponse[Any]) -> dict[str, Any]:
    structured = response.structured_output
    return {
        "status": response.status,
        "text": response.text,
        "output": response.output.model_dump(mode="json"),
        "structured": structured.model_dump(mode="json") if structured is not None else None,
        "structured_type": type(structured).__name__ if structured is not None else None,
        "usage_actions": response.usage.actions,
        "usage_credits": response.usage.credits,
    }


async def plain(url: str) -> dict[str, Any]:
    agent = narada.Agent(environment=_environment(url))
    return _summary(await agent.run("find the weather in Lisbon", timeout=60))


async def structured(url: str) -> dict[str, Any]:
    agent = narada.Agent(environment=_environment(url))
    return _summary(await agent.run("find a flight", output_schema=Flight, timeout=60))


async def error(url: str) -> dict[str, Any]:
    agent = narada.Agent(environment=_environment(url))
    return _summary(await agent.run("book the impossible", timeout=60))


async def inputs(url: str) -> dict[str, Any]:
    """Two input requests: ``on_input_required`` must run once per ``inputId``."""
    calls: list[dict[str, Any]] = []

    def on_input_required(metadata: HitlInputMetadata) -> None:
        calls.append({"input_id": metadata.input_id, "kind": metadata.action.name})

    agent = narada.Agent(environment=_environment(url))
    response = await agent.run("fill in the form", on_input_required=on_input_required, timeout=60)
    return {**_summary(response), "calls": calls}


async def ends_waiting(url: str) -> dict[str, Any]:
    """A task that ends at its input request: the SDK stops at ``completedAt``."""
    calls: list[str] = []
    agent = narada.Agent(environment=_environment(url))
    response = await agent.run(
        "wait for me", on_input_required=lambda m: calls.append(m.input_id), timeout=60
    )
    return {**_summary(response), "calls": calls}


async def attachment(url: str) -> dict[str, Any]:
    """A file the SDK uploads through the presigned POST, then attaches."""
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as file:
        file.write(b"an attachment from the official SDK")
    try:
        agent = narada.Agent(environment=_environment(url))
        with open(file.name, "rb") as handle:  # noqa: ASYNC230 - the SDK reads it so
            response = await agent.run("summarise the file", attachment=handle, timeout=60)
        return {**_summary(response), "filename": os.path.basename(file.name)}
    finally:
        os.unlink(file.name)


async def start(url: str) -> dict[str, Any]:
    """An environment that checks ``/sdk/config`` at start; then the default mode with no
    window, which the service refuses."""
    environment = narada.Environment(base_url=url)
    await environment.start()
    try:
        await narada.Agent(environment=environment).run("no window", timeout=30)
    except aiohttp.ClientResponseError as exc:
        return {"started": True, "bare_submit": exc.status}
    return {"started": True, "bare_submit": "accepted"}


async def validate(url: str) -> dict[str, Any]:
    """Every body the simulator sends, read raw and validated by the SDK's own models."""
    headers = {"x-api-key": os.environ["NARADA_API_KEY"]}
    validated: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as http:

        async def body_of(prompt: str, **simulate: Any) -> tuple[dict[str, Any], str]:
            fields: dict[str, Any] = {"prompt": prompt, "browserWindowId": WINDOW}
            if simulate.pop("structured", False):
                schema = Flight.model_json_schema()
                fields["responseFormat"] = {"type": "jsonSchema", "jsonSchema": schema}
            fields["simulate"] = simulate
            async with http.post(f"{url}/remote-dispatch", json=fields) as submitted:
                submitted.raise_for_status()
                request_id = (await submitted.json())["requestId"]
            async with http.get(f"{url}/remote-dispatch/responses/{request_id}") as read:
                read.raise_for_status()
                return await read.json(), request_id

        def agent_response(body: dict[str, Any], request_id: str) -> AgentResponse[Any]:
            response = body["response"]
            return AgentResponse[Any].model_validate(
                {
                    "request_id": request_id,
                    "status": body["status"],
                    "text": response["text"],
                    "output": response["output"],
                    "structured_output": None,
                    "usage": body["usage"],
                }
            )

        for kind in INPUT_KINDS:
            body, _ = await body_of("ask", outcome="input-required", duration=0,
                                    inputWait=600, inputKind=kind)  # fmt: skip
            metadata = HitlInputMetadata.model_validate(body["hitlInputMetadata"])
            assert body["completedAt"] is None
            validated.append(f"HitlInputMetadata:{metadata.action.name}")
            if body["response"] is not None:
                TextOutput.model_validate(body["response"]["output"])
                validated.append(f"TextOutput:waiting-{kind}")

        for outcome in ("success", "error"):
            body, request_id = await body_of("do it", outcome=outcome, duration=0)
            AgentUsage.model_validate(body["usage"])
            TextOutput.model_validate(body["response"]["output"])
            assert agent_response(body, request_id).status == outcome
            validated.append(f"AgentResponse:{outcome}")

        body, request_id = await body_of("flight", outcome="success", duration=0, structured=True)
        StructuredOutput[Flight].model_validate(body["response"]["output"])
        assert agent_response(body, request_id).output.type == "structured"
        validated.append("AgentResponse:structured")

        body, request_id = await body_of("stop", duration=0, endsWaiting=True)
        HitlInputMetadata.model_validate(body["hitlInputMetadata"])
        assert agent_response(body, request_id).status == "input-required"
        validated.append("AgentResponse:ends-waiting")
    return {"validated": validated}


SCENARIOS = {
    "plain": plain,
    "structured": structured,
    "error": error,
    "inputs": inputs,
    "ends_waiting": ends_waiting,
    "attachment": attachment,
    "start": start,
    "validate": validate,
}


async def main(urls: dict[str, str]) -> dict[str, Any]:
    warnings = _Warnings()
    logging.getLogger("narada").addHandler(warnings)
    names = list(urls)

    async def one(name: str) -> Any:
        try:
            return await SCENARIOS[name](urls[name])
        except Exception as exc:  # reported, so the test shows which scenario broke and how
            return {"exception": f"{type(exc).__name__}: {exc}"}

    results = await asyncio.gather(*(one(name) for name in names))
    return {
        "narada": narada.__version__,
        "python": list(sys.version_info[:2]),
        "warnings": warnings.messages,
        "results": dict(zip(names, results, strict=True)),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))

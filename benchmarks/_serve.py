"""The benchmark's server, run in a child process so its CPU never counts as the client's.

``python -m benchmarks._serve '<json spec>'`` prints one JSON line ``{"port": N}`` once it
listens on 127.0.0.1, then serves until terminated. Two kinds:

- ``sim``: the `async_dispatch.testing` simulator under uvicorn, plus two control routes
  under ``/_bench/``: ``create`` makes tasks without spending the key's rate limit (the
  benchmark compares polling, not submitting), ``stats`` reports what the server admitted
  since a given time (request counts, 429s, the busiest one-second window).
- ``fast``: a bare aiohttp server answering every status read with a fixed ``pending``
  body, as fast as this machine can: for measuring the client's own cost per request.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["main"]

_PENDING = json.dumps(
    {
        "status": "pending",
        "response": None,
        "createdAt": "2024-12-19T00:00:00.000000+00:00",
        "completedAt": None,
    }
).encode()


def _sim_config(spec: dict[str, Any]) -> Any:
    from async_dispatch.testing import Durations, Faults, OutcomeMix, RateLimit, SimulatorConfig

    rate = spec.get("rate_limit")
    return SimulatorConfig(
        api_keys=frozenset({"bench-key"}),
        durations=Durations(**spec.get("durations", {})),
        outcomes=OutcomeMix(**spec.get("outcomes", {"success": 0.9, "error": 0.1})),
        time_scale=spec.get("time_scale", 1.0),
        rate_limit=RateLimit(rate=rate["rate"], burst=rate["burst"]) if rate else None,
        faults=Faults(**spec.get("faults", {})),
        seed=spec.get("seed", 1),
    )


def _bench_app(sim: Any) -> Any:
    """The simulator's ASGI app with the ``/_bench/`` control routes in front."""
    app = sim.app

    async def create(body: dict[str, Any], send: Any) -> dict[str, Any]:
        # Through the app's own submit handler, past auth and rate limit (private API of a
        # sibling package: benchmark-only, and the smoke test notices if it changes).
        ids: list[str] = []
        submission = json.dumps(
            {"prompt": "/Operator benchmark", "executionMode": "cloud"}
        ).encode()
        for _ in range(int(body["n"])):
            answer: list[bytes] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": submission, "more_body": False}

            async def capture(
                message: MutableMapping[str, Any], answer: list[bytes] = answer
            ) -> None:
                if message["type"] == "http.response.body":
                    answer.append(message.get("body", b""))

            await app._submit("bench-key", receive, capture)
            ids.append(json.loads(b"".join(answer))["requestId"])
        return {"ids": ids, "now": sim.clock.now()}

    def stats(body: dict[str, Any]) -> dict[str, Any]:
        since = float(body.get("since", 0.0))
        times = [t for t in sim.accepted_request_times() if t >= since]
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return {
            "now": sim.clock.now(),
            "accepted": len(times),
            "first": times[0] if times else None,
            "last": times[-1] if times else None,
            "window_max": best,
            **sim.stats.as_dict(),
        }

    def finished(body: dict[str, Any]) -> dict[str, Any]:
        """When each task finishes on the server's clock (None: never), from its own record."""
        times = {}
        for request_id in body.get("ids", []):
            completion = sim.task_completed_at(request_id)
            times[request_id] = completion.clock if completion is not None else None
        return {"finished": times}

    async def bench(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/_bench/"):
            await app(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        if scope["path"] == "/_bench/create":
            result = await create(body, send)
        elif scope["path"] == "/_bench/finished":
            result = finished(body)
        else:
            result = stats(body)
        data = json.dumps(result).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return bench


async def _serve_sim(spec: dict[str, Any], sock: socket.socket) -> None:
    import uvicorn

    from async_dispatch.testing import Simulator

    sim = Simulator(_sim_config(spec))
    config = uvicorn.Config(
        _bench_app(sim),
        lifespan="on",
        log_level="critical",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=120,
        backlog=4096,
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        print(json.dumps({"port": sock.getsockname()[1]}), flush=True)

    announcer = asyncio.ensure_future(announce())
    await server.serve(sockets=[sock])
    announcer.cancel()


async def _serve_fast(sock: socket.socket) -> None:
    from aiohttp import web

    served = 0

    async def status(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(body=_PENDING, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"served": served})

    app = web.Application()
    app.router.add_get("/fast/v2/remote-dispatch/responses/{rid}", status)
    app.router.add_route("*", "/_bench/stats", stats)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=120)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=4096).start()
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    from async_dispatch.testing import bind_socket

    spec = json.loads(argv[0])
    # The simulator's own socket helper: it enables TCP_NODELAY, which uvicorn does not.
    # A socket made here without it held every answer ~40 ms for a delayed ACK, capping
    # the simulator at ~350 reads/s at 16 connections, whatever the CPU.
    sock = bind_socket("127.0.0.1", 0)
    if spec["kind"] == "fast":
        asyncio.run(_serve_fast(sock))
    else:
        asyncio.run(_serve_sim(spec, sock))


if __name__ == "__main__":
    main(sys.argv[1:])

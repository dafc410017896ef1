"""One traced replica of a FastAPI app on a fleet's `RedisStore`, as a process
(tests/test_trace_replicas.py).

    python tests/trace_replica.py --base-url URL --redis-url URL --name NAME \\
        --port PORT --spans FILE --secret SECRET --callback-url URL

The app is what an application would write: a `DispatchRuntime` in hybrid mode, a
``POST /jobs`` route that submits, the webhook route, and an outcome handler that does its
own traced work linked to the task (`task_links`). A middleware stands in for an HTTP
server instrumentation (opentelemetry-instrumentation-asgi): one ``SERVER`` span per
request, continuing the caller's ``traceparent``. Every finished span is written to
``--spans`` as one JSON line, flushed at once, so the test can join the files of all the
replicas, even of one it stopped. Prints ``{"ready": true}`` once it serves, and
``{"outcome": id, "kind": ..., "via": ...}`` for each outcome its handler takes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from async_dispatch import DispatchClient, Outcome
from async_dispatch.fastapi import RuntimeDep, dispatch_lifespan, webhook_router
from async_dispatch.instrumentation.otel import OpenTelemetryHook, task_links
from async_dispatch.redis import RedisStore, RedisTokenBucket
from async_dispatch.webhooks import DispatchRuntime


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class JsonLines(SpanExporter):
    """Each finished span as one JSON line (`ReadableSpan.to_json`), flushed at once."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - lives as long as the process

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._file.write(span.to_json(indent=None) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def build_app(args: argparse.Namespace, provider: TracerProvider) -> FastAPI:
    tracer = provider.get_tracer("app")
    hook = OpenTelemetryHook(tracer_provider=provider)
    bucket = RedisTokenBucket(args.redis_url, name=args.name, rate=50, burst=10)
    store = RedisStore(bucket.connection, name=args.name, lease=5.0)

    async def on_outcome(outcome: Outcome) -> None:
        # The consumer's own work, linked to the task's trace.
        with tracer.start_as_current_span("handle outcome", links=task_links(outcome)):
            say(outcome=outcome.request_id, kind=outcome.kind.value, via=outcome.via)

    runtime = DispatchRuntime(
        DispatchClient(
            api_key="sim-key",
            base_url=args.base_url,
            bucket=bucket,
            execution_mode="cloud",
            hooks=[hook],
        ),
        callback_url=args.callback_url,
        callback_secret=args.secret,
        store=store,
        bucket=bucket,
        safety_interval=0.2,
        deadline=120,
        on_outcome=on_outcome,
    )
    app = FastAPI(lifespan=dispatch_lifespan(runtime))
    app.include_router(webhook_router())
    w3c = TraceContextTextMapPropagator()

    @app.middleware("http")
    async def server_span(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        parent = w3c.extract(dict(request.headers))
        name = f"{request.method} {request.url.path}"
        with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
            return await call_next(request)

    @app.post("/jobs")
    async def create_job(prompt: str, dispatch: RuntimeDep) -> dict[str, str]:
        return {"request_id": await dispatch.submit(prompt)}

    return app


async def serve(args: argparse.Namespace) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines(args.spans)))
    app = build_app(args, provider)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110
            await anyio.sleep(0.02)
        say(ready=True)
    provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--base-url", "--redis-url", "--name", "--spans", "--secret"):
        parser.add_argument(option, required=True)
    parser.add_argument("--callback-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    anyio.run(serve, parser.parse_args())


if __name__ == "__main__":
    main()

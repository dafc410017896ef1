"""The library's logger, and its policy on what to say.

The library never configures logging; it only emits structlog events on the logger named
``async_dispatch``. Because structlog's default configuration prints every level to stdout,
a library that logs per request would flood the console of anyone who has not configured
structlog, and spend CPU building events nobody reads. So:

- by default only events a person should act on are emitted (a 429 pausing the key, a
  task that cannot be tracked, an authentication failure), at warning level;
- per-request tracing (every check, retry and delay) is opt-in with ``trace=True`` on
  `DispatchClient` or `Poller`, and emitted at debug level. When it is off, the hot path
  pays for one boolean test and nothing else.

Events carry `request_id`, `attempt`, `delay`, `status_code`; never the API key, never
response bodies (only the short excerpts that errors carry).
"""

from __future__ import annotations

import structlog

__all__ = ["logger"]

logger = structlog.get_logger("async_dispatch")

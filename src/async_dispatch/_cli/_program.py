"""The command's name, and what to install for the parts that need more than the core."""

from __future__ import annotations

from typing import Final

__all__ = ["CLI_EXTRA_HINT", "DISTRIBUTION", "PROG", "REDIS_EXTRA_HINT"]

PROG: Final = "async-dispatch"
DISTRIBUTION: Final = "async-remote-dispatch"
#: What to install for the commands that need more than the core (uvicorn, rich).
CLI_EXTRA_HINT: Final = f"pip install '{DISTRIBUTION}[cli]'"
REDIS_EXTRA_HINT: Final = f"pip install '{DISTRIBUTION}[redis]'"

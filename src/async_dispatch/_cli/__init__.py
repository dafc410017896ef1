"""The ``async-dispatch`` command: submit, inspect and wait for tasks; run the simulator
(``simulate``, ``demo``); watch a fleet (``fleet``).

Two promises shape it. Expected failures (a bad or missing key, an unreachable host, an
unknown id) end in one line on stderr and an exit code that says which class of failure
it was, never a traceback. And the API key never reaches any output: it is not echoed in
errors, and every stream the commands write to replaces it with ``***`` in case the
service echoes it back.

The modules, one concern each:

- `_main`: `main()` (the console script) and `run()` (the same as a coroutine, for
  embedding and for tests that talk to an in-process simulator through `transport`);
- `_parser`: every option and its checks; `_exit`: the exit codes and which error
  maps to which; `_logging`: the library's warnings on stderr for one command;
- `_connection`: the key, the URL and the client of the commands that talk to the
  service; `_interrupt`: Ctrl-C as an ending that lists what was left open;
- one module per command: `_tasks` (submit, status, wait), `_simulate`, `_demo`,
  `_fleet`; `_output`: how each shows things (JSON, plain lines, rich).
"""

from __future__ import annotations

from ._exit import ExitCode, exit_code_for
from ._main import main, run
from ._parser import build_parser

__all__ = ["ExitCode", "build_parser", "exit_code_for", "main", "run"]

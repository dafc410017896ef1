"""``python -m async_dispatch._cli``: the console script, for environments without it."""

from __future__ import annotations

import sys

from ._main import main

sys.exit(main())

"""`_json_text`: the context encoder of `RedisStore` (one C encoder built once, for
`add_many`'s one context per task) writes exactly what `json.dumps` writes, and fails
the same way: contexts are stored and handed back byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_dispatch.redis._task_store import _json_text

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_the_text_is_json_dumps_text(value: Any) -> None:
    assert _json_text(value) == json.dumps(value)


def test_what_json_dumps_refuses_is_refused_the_same_way() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        _json_text(circular)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json_text({"when": object()})

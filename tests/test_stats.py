"""`Poller.stats` is a frozen snapshot (as anyio's ``statistics()``), of live counters that
keep the same fields."""

from __future__ import annotations

import attrs
import pytest

from async_dispatch import OutcomeKind, PollerStats
from async_dispatch._stats import Counters


def test_the_live_counters_have_the_snapshots_fields() -> None:
    fields = {field.name for field in attrs.fields(PollerStats)}
    assert fields - {"tracked"} == set(Counters.__slots__)


def test_a_snapshot_is_frozen_and_does_not_follow_the_counters() -> None:
    counters = Counters()
    counters.polls_sent += 3
    counters.outcomes[OutcomeKind.SUCCESS] += 1
    stats = counters.snapshot(tracked=5)
    counters.polls_sent += 1
    counters.outcomes[OutcomeKind.SUCCESS] += 1
    assert (stats.tracked, stats.polls_sent, stats.outcomes[OutcomeKind.SUCCESS]) == (5, 3, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.polls_sent = 0  # type: ignore[misc]
    assert stats.as_dict()["outcomes"]["success"] == 1

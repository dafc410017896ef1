"""The value types: frozen, slotted, comparable, and honest about statuses they do not
know."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

from async_dispatch import Status, TaskStatus, Usage

CREATED = datetime(2024, 12, 19, tzinfo=timezone.utc)


def task(status: Status = Status.PENDING, raw: str = "pending", **fields: Any) -> TaskStatus:
    return TaskStatus(
        request_id="req_1", status=status, raw_status=raw, created_at=CREATED, **fields
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("pending", Status.PENDING),
        ("success", Status.SUCCESS),
        ("error", Status.ERROR),
        ("input-required", Status.INPUT_REQUIRED),
        ("cancelled", Status.UNKNOWN),
        ("SUCCESS", Status.UNKNOWN),
        ("input_required", Status.UNKNOWN),
        ("unknown", Status.UNKNOWN),
        ("", Status.UNKNOWN),
    ],
)
def test_wire_statuses_map_to_members(raw: str, status: Status) -> None:
    assert Status.from_wire(raw) is status


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (Status.PENDING, False),
        (Status.SUCCESS, True),
        (Status.ERROR, True),
        (Status.INPUT_REQUIRED, False),
        (Status.UNKNOWN, False),
    ],
)
def test_only_success_and_error_are_terminal(status: Status, terminal: bool) -> None:
    assert status.is_terminal is terminal
    assert task(status, status.value).is_terminal is terminal


def test_needs_input_only_while_input_is_required() -> None:
    assert task(Status.INPUT_REQUIRED, "input-required").needs_input
    assert not any(task(s, s.value).needs_input for s in Status if s is not Status.INPUT_REQUIRED)


def test_an_unknown_status_keeps_its_raw_string() -> None:
    status = task(Status.from_wire("paused"), "paused")
    assert status.status is Status.UNKNOWN
    assert status.raw_status == "paused"
    assert "paused" in repr(status)


def test_a_task_status_is_frozen_and_slotted() -> None:
    status = task()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.text = "changed"  # type: ignore[misc]
    assert not hasattr(status, "__dict__")
    assert not hasattr(Usage(), "__dict__")


def test_task_statuses_compare_by_value() -> None:
    assert task(text="a") == task(text="a")
    assert task(text="a") != task(text="b")
    assert attrs.evolve(task(), text="a") == task(text="a")


def test_the_repr_leaves_out_bulky_fields() -> None:
    shown = repr(
        task(
            Status.SUCCESS,
            "success",
            text="done",
            response={"text": "done", "huge": "h" * 10_000},
            structured_output={"rows": ["r" * 10_000]},
            hitl_input_metadata={"form": "f" * 10_000},
        )
    )
    assert "req_1" in shown
    assert "done" in shown
    assert len(shown) < 1000


def test_usage_defaults_to_unknown() -> None:
    assert Usage() == Usage(actions=None, credits=None)
    assert task().usage is None

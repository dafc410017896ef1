"""One task's whole life, fixed when it is created and read off the clock when asked.

A task is a handful of timestamps: when each input request opens and closes, when it
finishes. Its status at any moment is a pure function of those, so the simulator keeps no
timer per task and 100,000 pending tasks cost only their records. A status read computes
the phase at "now"; a webhook computes it at the moment it reports.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import attrs

from ._clock import Clock
from ._config import SimulatorConfig
from ._submit import Callback, Simulate, Submission

__all__ = ["InputRequest", "Phase", "Task", "create_task", "sample_json"]

Phase = Literal["pending", "input-required", "success", "error"]

ERROR_TEXT = "Failed to complete the task due to network timeout."
INPUT_TEXT = "The task requires authentication. Please log in to continue."
_EXCERPT = 80


@attrs.frozen
class InputRequest:
    """One human-in-the-loop request: open from ``start`` until ``end`` (loop time)."""

    start: float
    end: float
    hitl_id: str


@attrs.frozen
class Task:
    """A submitted task: who owns it and when each phase begins, in loop time."""

    request_id: str
    api_key: str
    created: float
    finish: float | None
    """When it reaches ``final``; None for a task that never finishes."""
    final: Literal["success", "error"]
    inputs: tuple[InputRequest, ...]
    prompt_excerpt: str
    structured: Any
    """The ``output.content`` of a success when the submit asked for a ``responseFormat``."""
    has_format: bool
    browser_window_id: str | None
    actions: int
    created_at: str
    completed_at: str | None
    callback: Callback | None

    def phase_at(self, t: float) -> tuple[Phase, InputRequest | None]:
        """The task's status at loop time ``t``, and the input request open then, if any."""
        if self.finish is not None and t >= self.finish:
            return self.final, None
        for request in self.inputs:
            if request.start <= t < request.end:
                return "input-required", request
        return "pending", None

    def body_at(self, t: float) -> dict[str, Any]:
        """The status response body as the service would answer at loop time ``t``."""
        phase, request = self.phase_at(t)
        response: dict[str, Any] | None = None
        usage: dict[str, Any] | None = None
        hitl: dict[str, Any] | None = None
        completed: str | None = None
        if phase == "success":
            text = f"Completed: {self.prompt_excerpt}"
            output: dict[str, Any] = (
                {"type": "structured", "content": self.structured}
                if self.has_format
                else {"type": "text", "text": text}
            )
            response = {"text": text, "output": output}
        elif phase == "error":
            response = {"text": ERROR_TEXT}
        elif request is not None:
            response = {"text": INPUT_TEXT}
            hitl = {"id": request.hitl_id, "type": "login", "message": INPUT_TEXT}
        if phase in ("success", "error"):
            completed = self.completed_at
            usage = {"actions": self.actions, "credits": self.actions * 0.25}
        return {
            "status": phase,
            "response": response,
            "createdAt": self.created_at,
            "completedAt": completed,
            "usage": usage,
            "browserWindowId": self.browser_window_id,
            "hitlInputMetadata": hitl,
        }

    def events(self, *, include_input: bool) -> list[float]:
        """Loop times at which this task's status changes in a way webhooks report."""
        times = [request.start for request in self.inputs if request.end > request.start]
        times = times if include_input else []
        if self.finish is not None:
            times.append(self.finish)
        return times


def create_task(
    submission: Submission,
    *,
    request_id: str,
    api_key: str,
    now: float,
    config: SimulatorConfig,
    clock: Clock,
    rng: random.Random,
) -> Task:
    """Draw a new task's life. The draws happen in a fixed order whatever ``simulate``
    overrides, so one override does not shift every later task of a seeded run."""
    drawn_outcome = config.outcomes.draw(rng)
    drawn_duration = config.durations.draw(rng)
    drawn_final = config.outcomes.draw_final(rng)
    actions = rng.randint(1, 30)

    override = submission.simulate or Simulate()
    outcome = override.outcome or drawn_outcome
    seconds = override.duration if override.duration is not None else drawn_duration
    duration = seconds * clock.scale

    inputs: tuple[InputRequest, ...] = ()
    final: Literal["success", "error"]
    finish: float | None
    if outcome == "never":
        finish, final = None, "success"
    elif outcome == "input-required":
        count = override.input_requests or config.input_requests
        wait = override.input_wait if override.input_wait is not None else config.input_wait
        wait *= clock.scale
        # Work, wait for input, work, ...: the running time is split evenly around the waits.
        segment = duration / (count + 1)
        inputs = tuple(
            InputRequest(
                start=now + (i + 1) * segment + i * wait,
                end=now + (i + 1) * segment + (i + 1) * wait,
                hitl_id=f"hitl_{rng.getrandbits(48):012x}",
            )
            for i in range(count)
        )
        finish = now + duration + count * wait
        final = override.final_outcome or drawn_final
    else:
        finish, final = now + duration, outcome

    schema = _schema_of(submission.response_format)
    return Task(
        request_id=request_id,
        api_key=api_key,
        created=now,
        finish=finish,
        final=final,
        inputs=inputs,
        prompt_excerpt=submission.prompt[:_EXCERPT],
        structured=sample_json(schema) if schema is not None else None,
        has_format=submission.response_format is not None,
        browser_window_id=submission.browser_window_id,
        actions=actions,
        created_at=clock.iso(now),
        completed_at=clock.iso(finish) if finish is not None else None,
        callback=submission.callback,
    )


def _schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema in a ``responseFormat``, bare or wrapped as ``{"schema": ...}``."""
    if response_format is None:
        return None
    schema = response_format.get("jsonSchema", response_format.get("json_schema"))
    if isinstance(schema, dict) and "type" not in schema and isinstance(schema.get("schema"), dict):
        schema = schema["schema"]
    return schema if isinstance(schema, dict) else {}


def sample_json(schema: object, depth: int = 0) -> Any:
    """A small value that fits ``schema``: enough for a structured-output round trip."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return sample_json(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: sample_json(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [sample_json(items, depth + 1)] if isinstance(items, dict) else []
    return _SCALARS.get(kind) if isinstance(kind, str) else {}


_SCALARS: dict[str, Any] = {
    "string": "example",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "null": None,
}

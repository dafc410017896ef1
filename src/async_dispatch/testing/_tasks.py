"""One task's whole life, fixed when it is created and read off the clock when asked.

A task is a handful of timestamps: when each input request opens and closes, when it
finishes. Its status at any moment is a pure function of those, so the simulator keeps no
timer per task and 100,000 pending tasks cost only their records. A status read computes
the phase at "now"; a webhook computes it at the moment it reports.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import attrs

from ._clock import Clock
from ._config import InputKind, SimulatorConfig
from ._submit import Callback, Simulate, Submission

__all__ = ["InputRequest", "Phase", "Task", "create_task", "input_action", "sample_json"]

Phase = Literal["pending", "input-required", "success", "error"]

ERROR_TEXT = "Failed to complete the task due to network timeout."
_EXCERPT = 80

_PROMPTS: dict[InputKind, str] = {
    "prompt_for_user_input": "Please enter the one-time code sent to your phone.",
    "prompt_for_user_file": "Please upload the invoice to attach to the expense report.",
    "user_approval": "Place the order for 3 items, 42.00 EUR in total?",
}


def input_action(kind: InputKind, step_id: str) -> dict[str, Any]:
    """The ``action`` of an input request, shaped as the SDK's ``HitlInputMetadata`` reads it."""
    action: dict[str, Any] = {"name": kind, "step_id": step_id, "prompt_message": _PROMPTS[kind]}
    if kind == "prompt_for_user_input":
        action["variables"] = [
            {"name": "code", "type": "string", "required": True, "enum_values": None},
            {
                "name": "remember_device",
                "type": "enum",
                "required": False,
                "enum_values": ["yes", "no"],
            },
        ]
    elif kind == "prompt_for_user_file":
        action["variable_name"] = "invoice"
    else:
        action["approve_label"] = "Place order"
        action["reject_label"] = "Cancel"
    return action


@attrs.frozen
class InputRequest:
    """One human-in-the-loop request: open from ``start`` until ``end`` (loop time)."""

    start: float
    end: float
    hitl_id: str
    kind: InputKind
    step_id: str

    @property
    def prompt(self) -> str:
        return _PROMPTS[self.kind]

    def metadata(self) -> dict[str, Any]:
        """The ``hitlInputMetadata`` object: the request's id and what it asks for."""
        return {"inputId": self.hitl_id, "action": input_action(self.kind, self.step_id)}


@attrs.frozen
class Task:
    """A submitted task: who owns it and when each phase begins, in loop time."""

    request_id: str
    api_key: str
    created: float
    finish: float | None
    """When it reaches ``final``; None for a task that never finishes."""
    final: Literal["success", "error", "input-required"]
    """``input-required`` for a task that ends waiting at its last input request."""
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
    null_response_while_waiting: bool = False
    input_field: str = "hitlInputMetadata"
    """``activeInputRequest`` for the name the service used up to SDK 0.2.0."""

    def phase_at(self, t: float) -> tuple[Phase, InputRequest | None]:
        """The task's status at loop time ``t``, and the input request open then, if any."""
        if self.finish is not None and t >= self.finish:
            if self.final == "input-required":
                return self.final, self.inputs[-1]
            return self.final, None
        for request in self.inputs:
            if request.start <= t < request.end:
                return "input-required", request
        return "pending", None

    def body_at(self, t: float) -> dict[str, Any]:
        """The status response body as the service would answer at loop time ``t``.

        Every finished task (``completedAt`` set) carries ``response.text``,
        ``response.output`` and ``usage``: the official SDK reads all three.
        """
        phase, request = self.phase_at(t)
        finished = self.finish is not None and t >= self.finish
        response: dict[str, Any] | None = None
        if phase == "success" and self.has_format:
            text = f"Completed: {self.prompt_excerpt}"
            output = {"type": "structured", "content": self.structured}
            response = {"text": text, "output": output}
        elif phase == "success":
            response = _text_response(f"Completed: {self.prompt_excerpt}")
        elif phase == "error":
            response = _text_response(ERROR_TEXT)
        elif request is not None and (finished or not self.null_response_while_waiting):
            response = _text_response(request.prompt)
        usage = None
        if finished:
            usage = {"actions": self.actions, "credits": self.actions * 0.25}
        return {
            "status": phase,
            "response": response,
            "createdAt": self.created_at,
            "completedAt": self.completed_at if finished else None,
            "usage": usage,
            "browserWindowId": self.browser_window_id,
            self.input_field: request.metadata() if request is not None else None,
        }

    def events(self, *, include_input: bool) -> list[float]:
        """Loop times at which this task's status changes in a way webhooks report."""
        times = [request.start for request in self.inputs if request.end > request.start]
        times = times if include_input else []
        if self.final == "input-required" and times:
            times.pop()  # the last request opens as the task ends: one event, the final one
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
    outcome = "input-required" if override.ends_waiting else override.outcome or drawn_outcome
    ends_waiting = override.ends_waiting or (config.end_waiting and outcome == "input-required")
    seconds = override.duration if override.duration is not None else drawn_duration
    duration = seconds * clock.scale

    inputs: tuple[InputRequest, ...] = ()
    final: Literal["success", "error", "input-required"]
    finish: float | None
    if outcome == "never":
        finish, final = None, "success"
    elif outcome == "input-required":
        count = override.input_requests or config.input_requests
        wait = override.input_wait if override.input_wait is not None else config.input_wait
        wait *= clock.scale
        # Work, wait for input, work, ...: the running time is split evenly around the waits.
        segment = duration / (count + 1)
        kinds = (override.input_kind,) if override.input_kind else config.input_kinds
        inputs = tuple(
            _input_request(
                rng.getrandbits(48),
                kinds,
                start=now + (i + 1) * segment + i * wait,
                end=now + (i + 1) * segment + (i + 1) * wait,
            )
            for i in range(count)
        )
        if ends_waiting:
            # It stops at its last request for good: the service gave up waiting for it.
            inputs = (*inputs[:-1], attrs.evolve(inputs[-1], end=math.inf))
            finish, final = inputs[-1].start, "input-required"
        else:
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
        null_response_while_waiting=(override.input_response or config.input_response) == "null",
        input_field=(
            "activeInputRequest"
            if (
                override.legacy_input_field
                if override.legacy_input_field is not None
                else config.legacy_input_field
            )
            else "hitlInputMetadata"
        ),
    )


def _input_request(
    bits: int, kinds: tuple[InputKind, ...], *, start: float, end: float
) -> InputRequest:
    """An input request from one seeded draw: its id, and from that its kind and step."""
    return InputRequest(
        start=start,
        end=end,
        hitl_id=f"hitl_{bits:012x}",
        kind=kinds[bits % len(kinds)],
        step_id=f"step_{bits % 10**8:08d}",
    )


def _text_response(text: str) -> dict[str, Any]:
    return {"text": text, "output": {"type": "text", "content": text}}


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

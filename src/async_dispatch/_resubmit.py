"""Resubmitting failed tasks: `ResubmitPolicy`, and `TaskSpec`, what a store keeps for it.

A task that ends in ``error`` has ended at the service, so submitting its prompt again
never runs it twice at once: that is a *resubmission*, a new task with a new request id,
tracked as the same task (same context, same deadline, the outcome's `Outcome.attempts`
lists every id). How it runs:

1. A check reads ``error``; the poller asks its policy (`ResubmitPolicy.wants`). If the
   task may go again, the store plans the resubmission like a check (`CheckEnd` with
   ``resubmit=True``, due after `ResubmitPolicy.wait_before`): in the same heap, the
   same budget, with no coroutine waiting per task.
2. When it falls due a worker claims it like a check, marks it as being resubmitted
   (`TaskStore.begin_resubmit`: durable in Redis and SQLite), submits, and the store
   swaps the old id for the new one in one step (`TaskStore.resubmitted`). The submit
   is paid with the token the claim took.
3. A resubmission that a crash cut short is found marked at its next claim: it may have
   created a task, so it is never sent again; the task ends ``SUBMIT_UNCERTAIN``.

One deadline covers the whole task, every attempt included: a resubmission is planned
only if it falls before the task's last-check time (``deadline - Cadence.lead``); if not,
the error is the final outcome. `OutcomeKind.TIMED_OUT` and `OutcomeKind.SUBMIT_UNCERTAIN`
are never resubmitted (see `ResubmitPolicy.on`).

What a store keeps (`TaskSpec`): the prompt, the submit options that are not secret, the
output type's import path (or its JSON Schema) and the earlier attempts' ids. Secret
fields (`SubmitOptions` marks them: the webhook secret and headers, secret variables,
credentials, MCP servers, vector stores, `extra`) are never stored: the replica that
resubmits fills in its own poller's callback URL, secret and headers, and gets any other
secret from `ResubmitPolicy.secret_options`. A task whose options hold such secrets
without that hook is refused at submit (`UsageError`) rather than resubmitted without
them. The API key is never part of a submit's options.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._errors import UsageError
from ._options import SubmitOptions, secret_field_names
from ._outcome import Outcome, OutcomeKind

__all__ = ["ResubmitPolicy", "TaskSpec"]

#: Kinds that may be resubmitted when a policy names them.
_RESUBMITTABLE: Final = frozenset({OutcomeKind.ERROR, OutcomeKind.FAILED})
#: Kinds a policy may not name, and why.
_NEVER: Final = {
    OutcomeKind.TIMED_OUT: "the task's one deadline is spent, and the earlier run may "
    "still be going (a resubmission could run it twice at once)",
    OutcomeKind.SUBMIT_UNCERTAIN: "the task may exist at the service, still running (a "
    "resubmission could run it twice at once)",
    OutcomeKind.SUCCESS: "it succeeded",
    OutcomeKind.INPUT_REQUIRED: "it waits for a person",
}


def _check_kinds(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, frozenset) or not value:
        raise UsageError("on must be a non-empty frozenset of OutcomeKind")
    for kind in value:
        if not isinstance(kind, OutcomeKind):
            raise UsageError(f"on must hold OutcomeKind values, got {kind!r}")
        if kind in _NEVER:
            raise UsageError(f"{kind.name} is never resubmitted: {_NEVER[kind]}")


def _check_number(minimum: float) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{attribute.name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value >= minimum):
            raise UsageError(f"{attribute.name} must be finite and >= {minimum:g}, got {value!r}")

    return check


def _check_attempts(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"attempts must be an int >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class ResubmitPolicy:
    """When a poller resubmits a task that failed: ``Poller(resubmit=ResubmitPolicy())``.

    The policy is code (`when`, `secret_options`), so it is the poller's configuration,
    not a task's data: in a fleet, give every replica the same policy (whichever replica
    sees an attempt fail applies its own). Per submit, ``resubmit=False`` opts one task
    out.
    """

    #: Attempts in all, the first included: 3 means up to two resubmissions.
    attempts: int = attrs.field(default=3, validator=_check_attempts)
    #: Which final kinds may be resubmitted: `OutcomeKind.ERROR` (the service ran the task
    #: and it failed: the earlier run has ended) and, only if named here,
    #: `OutcomeKind.FAILED` (the service does not know the id, a 404, or finished it in a
    #: status this version cannot read: be sure the earlier run cannot still be going).
    #: TIMED_OUT and SUBMIT_UNCERTAIN are refused (`UsageError`): the earlier run may still
    #: be going, and the task's one deadline is spent.
    on: frozenset[OutcomeKind] = attrs.field(
        default=frozenset({OutcomeKind.ERROR}), validator=_check_kinds
    )
    #: Further condition on the failed attempt's outcome (its `status`, `error`,
    #: `context`, `attempts`), e.g. only some error texts, or only
    #: `OutputValidationError`. None: every outcome of a kind in `on`. A predicate that
    #: raises counts as "no" (logged as ``resubmit_predicate_failed``).
    when: Callable[[Outcome], bool] | None = None
    #: Seconds before the second attempt; each later one waits `factor` times longer, up
    #: to `max_wait`, with up to `jitter` (a fraction) taken off at random.
    wait: float = attrs.field(default=5.0, validator=_check_number(0.0))
    factor: float = attrs.field(default=2.0, validator=_check_number(1.0))
    max_wait: float = attrs.field(default=300.0, validator=_check_number(0.0))
    jitter: float = attrs.field(default=0.1, validator=_check_number(0.0))
    #: Secret submit fields for a resubmission, from the task's context, called on the
    #: replica that resubmits (stores keep no secrets): e.g.
    #: ``lambda context: SubmitOptions(secret_variables=vault.get(context["user"]))``.
    #: The webhook fields need none of this: the resubmitting poller fills in its own.
    secret_options: Callable[[Any], SubmitOptions] | None = None

    def __attrs_post_init__(self) -> None:
        if self.jitter > 1:
            raise UsageError(f"jitter must be a fraction between 0 and 1, got {self.jitter!r}")

    def wait_before(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt` (2 for the first resubmission)."""
        base = min(self.max_wait, self.wait * self.factor ** max(0, attempt - 2))
        return base * (1 - self.jitter * rng.random())


#: The SubmitOptions fields a `TaskSpec` may keep: the ones that are not secret.
_KEPT: Final = tuple(
    field.name for field in attrs.fields(SubmitOptions) if field.name not in secret_field_names()
)


@attrs.frozen(kw_only=True)
class TaskSpec:
    """What a store keeps of a task's submit, beyond the record every task has.

    Only tasks submitted through a poller with a resubmit policy or a typed output have
    one (`TrackedTask.spec`; None otherwise). Nothing in it is secret: see the module
    docstring of `async_dispatch._resubmit` for what is left out and how a resubmission
    gets it back. A store keeps it as `to_json()` and reads it with `from_json()`.
    """

    #: The prompt, for a resubmission; None when the task may not be resubmitted.
    prompt: str | None = None
    #: The non-secret `SubmitOptions` fields that were set, by field name (JSON values).
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: The output type: its import path (``module:qualname``), or a JSON Schema mapping;
    #: None when the submit asked for no typed output.
    output: str | Mapping[str, Any] | None = None
    #: The request ids of the earlier attempts, oldest first (not the current one).
    attempts: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, prompt: str | None, options: SubmitOptions, output: str | Mapping[str, Any] | None
    ) -> TaskSpec:
        """The spec of a first attempt: `options`' non-secret fields that are set."""
        kept = {}
        for name in _KEPT:
            value = getattr(options, name)
            if value is not None:
                kept[name] = value
        return cls(prompt=prompt, options=kept, output=output)

    def submit_options(self) -> SubmitOptions:
        """The stored options, for a resubmission (secrets are the caller's to add)."""
        return SubmitOptions(**self.options)

    def stored_json(self, *, request_id: str, store: str) -> str:
        """`to_json()` for a store that keeps the spec as text (a fleet's Redis, a SQLite
        file): options that are not JSON are the caller's mistake, said as one."""
        try:
            return self.to_json()
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"{store}'s task options must be JSON-serialisable: {exc} "
                f"(request id {request_id!r})"
            ) from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "prompt": self.prompt,
                "options": dict(self.options),
                "output": self.output,
                "attempts": list(self.attempts),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> TaskSpec | None:
        """The spec `to_json()` wrote; None for an empty text (a task without one)."""
        if not text:
            return None
        data = json.loads(text)
        output = data.get("output")
        return cls(
            prompt=data.get("prompt"),
            options={k: v for k, v in dict(data.get("options") or {}).items() if k in _KEPT},
            output=output if isinstance(output, (str, Mapping)) else None,
            attempts=tuple(str(rid) for rid in data.get("attempts") or ()),
        )

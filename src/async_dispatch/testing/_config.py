"""What one simulator run looks like: frozen values, so a run is its config plus its seed.

Print the config (and ``Simulator.seed``) of a failing run and you can replay it exactly.
Durations of tasks are in *simulated* seconds and pass through ``time_scale``; every other
time here (slow answers, webhook backoff, rate limits) is in real clock seconds, because
those model the network and the server, not the work.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Literal, get_args

import attrs
from attrs.validators import and_, ge, gt, in_, le

__all__ = [
    "DEFAULT_BASE_PATH",
    "INPUT_KINDS",
    "Durations",
    "Faults",
    "InputKind",
    "OutcomeMix",
    "OutcomeName",
    "RateLimit",
    "SimulatorConfig",
    "Webhooks",
]

OutcomeName = Literal["success", "error", "input-required", "never"]
"""How a task ends: ``never`` stays pending forever (for deadline demos)."""

InputKind = Literal["prompt_for_user_input", "prompt_for_user_file", "user_approval"]
"""The three kinds of input request the service's agent makes (``action.name``)."""

#: Every kind of input request the simulator can ask for (`InputKind`).
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)

DEFAULT_BASE_PATH = "/fast/v2"
"""Where the public service serves the API; the simulator answers only under its own."""

_probability = and_(ge(0.0), le(1.0))


@attrs.frozen
class Durations:
    """How long tasks run, in simulated seconds: lognormal around ``median``, clamped.

    Real task times are skewed (most finish near a typical time, a few take far longer); a
    lognormal says that with two numbers, and the clamp keeps a test's worst case bounded.
    ``sigma=0`` makes every task take exactly ``median``.
    """

    median: float = attrs.field(default=1.0, validator=ge(0.0))
    sigma: float = attrs.field(default=0.5, validator=ge(0.0))
    minimum: float = attrs.field(default=0.0, validator=ge(0.0))
    maximum: float = attrs.field(default=60.0, validator=ge(0.0))

    @classmethod
    def fixed(cls, seconds: float) -> Durations:
        """Every task takes exactly ``seconds``."""
        return cls(median=seconds, sigma=0.0, minimum=0.0, maximum=seconds)

    def draw(self, rng: random.Random) -> float:
        value = rng.lognormvariate(math.log(self.median), self.sigma) if self.median > 0 else 0.0
        return min(max(value, self.minimum), self.maximum)


@attrs.frozen
class OutcomeMix:
    """Relative weights of how tasks end; they need not sum to one."""

    success: float = attrs.field(default=0.8, validator=ge(0.0))
    error: float = attrs.field(default=0.1, validator=ge(0.0))
    input_required: float = attrs.field(default=0.1, validator=ge(0.0))
    never: float = attrs.field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.success + self.error + self.input_required + self.never <= 0:
            raise ValueError("OutcomeMix needs at least one positive weight")

    @classmethod
    def only(cls, outcome: OutcomeName) -> OutcomeMix:
        """Every task ends the same way."""
        weights = dict.fromkeys(("success", "error", "input_required", "never"), 0.0)
        weights[outcome.replace("-", "_")] = 1.0
        return cls(**weights)

    def draw(self, rng: random.Random) -> OutcomeName:
        weights: tuple[tuple[OutcomeName, float], ...] = (
            ("success", self.success),
            ("error", self.error),
            ("input-required", self.input_required),
            ("never", self.never),
        )
        r = rng.random() * sum(weight for _, weight in weights)
        for name, weight in weights:
            if r < weight:
                return name
            r -= weight
        # Only rounding gets here: answer the last outcome that can happen at all.
        return next(name for name, weight in reversed(weights) if weight > 0)

    def draw_final(self, rng: random.Random) -> Literal["success", "error"]:
        """How a task ends once its input was given: success or error, by their weights."""
        total = self.success + self.error
        if total == 0:
            return "success"
        return "success" if rng.random() * total < self.success else "error"


@attrs.frozen
class RateLimit:
    """A per-key token bucket on the server: ``rate`` requests a second, bursts of ``burst``.

    Over the limit, the answer is 429 with ``Retry-After`` in whole seconds (the common
    form) or as an HTTP-date (the other form the RFC allows, which clients often mishandle).
    """

    rate: float = attrs.field(validator=gt(0.0))
    burst: int = attrs.field(default=1, validator=ge(1))
    retry_after: Literal["seconds", "http-date"] = attrs.field(
        default="seconds", validator=in_(("seconds", "http-date"))
    )


def _codes(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class Faults:
    """Per-request probabilities of the ways a real service (or its proxy) misbehaves.

    At most one fault hits a request, so the probabilities must sum to at most one. On a
    submit the fault strikes after the task was created: that is the "uncertain submit" a
    client must not blindly retry.
    """

    server_error: float = attrs.field(default=0.0, validator=_probability)
    """A JSON 500/502/503/504, the code picked at random from ``server_error_codes``."""
    html_error: float = attrs.field(default=0.0, validator=_probability)
    """A 502 HTML page, as a proxy in front of the service sends it."""
    html_ok: float = attrs.field(default=0.0, validator=_probability)
    """A 200 HTML page (a captive portal or a misconfigured proxy)."""
    truncated_json: float = attrs.field(default=0.0, validator=_probability)
    """The normal answer with its JSON body cut in half (Content-Length matches the cut)."""
    drop: float = attrs.field(default=0.0, validator=_probability)
    """The connection closes halfway through the body: a transport error for the client."""
    slow: float = attrs.field(default=0.0, validator=_probability)
    """The normal answer after ``slow_delay`` seconds."""
    unknown_status: float = attrs.field(default=0.0, validator=_probability)
    """A status answer whose ``status`` is a value the contract does not list (``paused``)."""
    slow_delay: float = attrs.field(default=2.0, validator=ge(0.0))
    server_error_codes: tuple[int, ...] = attrs.field(
        default=(500, 502, 503, 504), converter=_codes
    )
    on_status: bool = True
    """Whether status reads (``GET``) suffer these faults."""
    on_submit: bool = False
    """Whether submits (``POST``) suffer them too."""

    def __attrs_post_init__(self) -> None:
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities sum to {self.total:.3f}, more than 1")
        if not self.server_error_codes:
            raise ValueError("server_error_codes must not be empty")

    @property
    def total(self) -> float:
        return (
            self.server_error
            + self.html_error
            + self.html_ok
            + self.truncated_json
            + self.drop
            + self.slow
            + self.unknown_status
        )


@attrs.frozen
class Webhooks:
    """How the simulator delivers ``callbackUrl`` webhooks: at least once, sometimes not.

    Failed deliveries (non-2xx or transport error) are retried up to ``max_attempts`` in
    all, waiting ``backoff`` seconds and doubling. ``drop`` of deliveries are silently never
    sent and ``duplicate`` are sent twice, so receivers can prove they cope.
    """

    notify_input_required: bool = False
    """Also deliver when a task starts waiting for input, once per input request."""
    drop: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    max_attempts: int = attrs.field(default=4, validator=ge(1))
    backoff: float = attrs.field(default=0.5, validator=ge(0.0))
    timeout: float = attrs.field(default=5.0, validator=gt(0.0))
    concurrency: int = attrs.field(default=8, validator=ge(1))


def _input_kinds(value: Iterable[str]) -> tuple[InputKind, ...]:
    kinds = tuple(value)
    unknown = [kind for kind in kinds if kind not in INPUT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"input_kinds must be a non-empty choice of {INPUT_KINDS}, got {kinds}")
    return kinds  # type: ignore[return-value]  # checked just above


def _check_base_path(_: object, __: object, value: str) -> None:
    if value and (not value.startswith("/") or value.endswith("/")):
        raise ValueError(
            f"base_path must be empty or start with '/' and not end with it: {value!r}"
        )


def _keys(value: str | Iterable[str]) -> frozenset[str]:
    """One key or any collection of keys."""
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


@attrs.frozen
class SimulatorConfig:
    """Everything that describes one simulator run.

    ``seed`` fixes every random choice (task ids, outcomes, durations, faults, webhook
    drops), so the same seed and the same sequence of requests replay the same run. With
    ``seed=None`` a seed is drawn and shown as ``Simulator.seed``.
    """

    api_keys: frozenset[str] = attrs.field(default=frozenset({"sim-key"}), converter=_keys)
    """Keys that may submit and read tasks; any other key gets 401."""
    forbidden_keys: frozenset[str] = attrs.field(default=frozenset(), converter=_keys)
    """Keys the service knows but that lack access: 403."""
    durations: Durations = Durations()
    outcomes: OutcomeMix = OutcomeMix()
    input_wait: float = attrs.field(default=1.0, validator=ge(0.0))
    """Simulated seconds each input request stays open before the task runs on."""
    input_requests: int = attrs.field(default=1, validator=ge(1))
    """How many input requests an ``input-required`` task makes, each with its own id."""
    input_kinds: tuple[InputKind, ...] = attrs.field(default=INPUT_KINDS, converter=_input_kinds)
    """The kinds input requests are picked from (by each request's seeded id)."""
    input_response: Literal["text", "null"] = attrs.field(
        default="text", validator=in_(("text", "null"))
    )
    """What ``response`` holds while a task waits for input: the prompt as text, or null
    (the service may send either)."""
    end_waiting: bool = False
    """Every ``input-required`` task *ends* at its last input request (``completedAt`` set,
    status ``input-required``), as ``simulate.endsWaiting`` does for one task."""
    legacy_input_field: bool = False
    """Name the input request ``activeInputRequest``, as the service did for SDK <= 0.2.0,
    instead of ``hitlInputMetadata``."""
    require_browser_window: bool = True
    """Refuse (422) a submit in ``client`` execution mode (the default) without a
    ``browserWindowId``, as the service does. False accepts it."""
    base_path: str = attrs.field(default=DEFAULT_BASE_PATH, validator=_check_base_path)
    """The path the API is served under (the public service's by default); any other path
    answers 404, so a client with a wrong base URL fails as it would in production."""
    max_upload_size: int = attrs.field(default=10 * 1024 * 1024, validator=ge(1))
    """Largest file the simulated storage bucket accepts, in bytes."""
    time_scale: float = attrs.field(default=1.0, validator=gt(0.0))
    """Clock seconds per simulated second: 0.01 runs a 60 s task in 0.6 s."""
    rate_limit: RateLimit | None = None
    faults: Faults = Faults()
    webhooks: Webhooks = Webhooks()
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("api_keys must hold at least one key")

    @property
    def default_key(self) -> str:
        """The key test clients use unless told otherwise: the smallest, for determinism."""
        return min(self.api_keys)

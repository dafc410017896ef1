"""`FleetSigner`: a fleet secret's MACs over what replicas write to Redis, checked on reading.

Redis sits inside a fleet's trust boundary: whoever can write to its keys can add an entry
to the outcome stream (delivered like any other), or change a task's record. With a fleet
secret (`RedisStore(secret=...)`), which every replica holds and Redis never sees, each
thing a replica writes that ends up in an outcome carries an HMAC-SHA256 (128 bits, hex):

- an outcome a replica builds (a reading's SUCCESS or FAILED, an input request, a task
  that cannot be tracked): a MAC over the entry's whole text, beside it (field ``m``);
- a task's record: a MAC over its id, context, trace context and spec, written when the
  task is tracked (record field ``m``) and checked whenever a replica reads the record
  (to check it, or to resolve it from a webhook), so a context changed in Redis is never
  signed into an outcome;
- a check's reading and error (``sm``, ``em``), and the phase that makes the next claim
  resubmit the task (``pm``), bound to the task's id; an early webhook's reading held
  for a submit in flight (its MAC before the payload).

Two outcomes are built inside Redis, because Redis's clock decides them: TIMED_OUT and
SUBMIT_UNCERTAIN. They cannot be signed there (the secret would have to travel to Redis),
so they carry the signed pieces they were built from: a TIMED_OUT entry has a proof
(field ``p``: the record's texts with their MACs), and a SUBMIT_UNCERTAIN has the MAC its
replica put on the intent. The reader checks every piece and that the outcome says exactly
what the pieces say.

What this guarantees, and what it cannot: an outcome delivered from a signed fleet says
what a replica read or decided for that task, with the context the task was tracked
with. A writer to Redis can still end a task early as TIMED_OUT (with genuine readings
only), delete it, or deliver a genuine outcome again (a replay is a redelivery, which
at-least-once handlers already tolerate). It cannot make a task SUCCESS, invent output,
or move one task's result to another task or fleet. A secret also binds the fleet
(`async_dispatch:{name}:integrity` keeps its fingerprint): replicas with another secret,
or none, are refused.

The MACs use a key derived from the secret and the fleet name, so one secret shared by
two fleets signs nothing valid across them. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final

from .._errors import UsageError

__all__ = ["MAC_CHARS", "MIN_SECRET_BYTES", "FleetSigner", "IntegrityError", "canonical_json"]

#: The shortest secret accepted: 128 bits, what the MACs are cut to.
MIN_SECRET_BYTES: Final = 16
#: How long a MAC is, as text: 128 bits in hex.
MAC_CHARS: Final = 32


class IntegrityError(ValueError):
    """What a replica read from Redis does not carry the fleet secret's MAC it needs (the
    reason, for a log line; `FleetIntegrityError` is what callers see)."""


def canonical_json(value: Any) -> bytes:
    """One text for a JSON value whatever wrote it (sorted keys, no spaces): what a MAC over
    parsed values covers, since Redis's scripts pass texts through but readers parse them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class FleetSigner:
    """Signs and checks a fleet's records and outcomes with its secret.

    Args:
        secret: At least 16 bytes (a ``str`` is taken as UTF-8): e.g.
            ``secrets.token_urlsafe(32)``, kept where the API key is kept.
        fleet: The fleet's name; the MAC key is derived from both.
    """

    __slots__ = ("_hmac",)

    def __init__(self, secret: str | bytes, fleet: str) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise UsageError(
                f"a fleet secret must be at least {MIN_SECRET_BYTES} bytes (e.g. "
                "secrets.token_urlsafe(32)), the same on every replica of the fleet"
            )
        key = hmac.digest(secret, b"async-dispatch fleet\0" + fleet.encode(), "sha256")
        # Keyed once; each MAC copies it (a third cheaper than keying again each time).
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "FleetSigner(***)"

    def _mac(self, purpose: bytes, *parts: str | bytes) -> str:
        # Each part length-prefixed, so no two lists of parts give one message.
        message = [purpose]
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            message.append(b"%d:" % len(data))
            message.append(data)
        mac = self._hmac.copy()
        mac.update(b"".join(message))
        return mac.hexdigest()[:MAC_CHARS]

    @staticmethod
    def _same(expected: str, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(expected, given)

    def fingerprint(self) -> str:
        """What identifies this secret in Redis (a MAC of nothing): never the secret."""
        return self._mac(b"fingerprint")

    # -- signing ------------------------------------------------------------------------

    def outcome(self, text: str) -> str:
        """The MAC of an outcome entry a replica writes (its whole JSON text)."""
        return self._mac(b"outcome", text)

    def record(self, request_id: str, context: str, trace: str, spec: str) -> str:
        """The MAC of a task's record: its id and the texts stored for it ('' for none)."""
        return self._mac(b"record", request_id, context, trace, spec)

    def reading(self, request_id: str, field: str, text: str) -> str:
        """The MAC of what a replica stores for a task beside its record: its last
        reading (``field`` "st"), error ("er"), a 'wait' phase ("ph": resubmit at the next
        claim), or an early webhook's reading ("parked")."""
        return self._mac(b"reading", request_id, field, text)

    def intent(self, members: dict[str, Any]) -> str:
        """The MAC of a sent submit's SUBMIT_UNCERTAIN members (its error and context)."""
        return self._mac(b"intent", canonical_json(members))

    # -- checking -----------------------------------------------------------------------

    def check_record(self, request_id: str, context: str, trace: str, spec: str, mac: str) -> None:
        if not self._same(self.record(request_id, context, trace, spec), mac):
            raise IntegrityError(
                "its record has no valid MAC" if mac else "its record is not signed"
            )

    def check_reading(self, request_id: str, field: str, text: str, mac: str) -> None:
        if not self._same(self.reading(request_id, field, text), mac):
            raise IntegrityError(f"its {field!r} field is not signed")

    def check_entry(self, text: str, mac: str, proof: str) -> None:
        """Check an outcome entry: its text, its MAC (``m``) and its proof (``p``).

        Raises:
            IntegrityError: Saying what does not hold.
        """
        if mac:
            if not self._same(self.outcome(text), mac):
                raise IntegrityError("its MAC does not match its text")
            return
        data = json.loads(text)
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind == "submit-uncertain":
            members = {"error": data.get("error"), "context": data.get("context")}
            if not self._same(self.intent(members), data.get("mac")):
                raise IntegrityError("its submit intent is not signed")
            return
        if kind == "timed-out" and proof:
            self._check_timed_out(data, json.loads(proof))
            return
        raise IntegrityError("it is not signed")

    def _check_timed_out(self, data: dict[str, Any], proof: dict[str, Any]) -> None:
        """A TIMED_OUT built in Redis: every piece signed, and the outcome made of them."""
        request_id = str(data.get("request_id"))
        texts = {name: proof.get(name) or "" for name in ("c", "tr", "sp", "st", "er")}
        self.check_record(request_id, texts["c"], texts["tr"], texts["sp"], proof.get("m", ""))
        for field, mac_field in (("st", "sm"), ("er", "em")):
            if texts[field] and not self._same(
                self.reading(request_id, field, texts[field]), proof.get(mac_field)
            ):
                what = "reading" if field == "st" else "error"
                raise IntegrityError(f"its last {what} is not signed")
        expected: dict[str, Any] = {
            "context": json.loads(texts["c"] or "null"),
            "status": json.loads(texts["st"]) if texts["st"] else None,
            "trace": texts["tr"] or None,
        }
        spec = json.loads(texts["sp"]) if texts["sp"] else {}
        earlier = spec.get("attempts") if isinstance(spec, dict) else None
        expected["attempts"] = [*earlier, request_id] if earlier else None
        error = data.get("error")
        if data.get("gap"):
            # The fleet's own gap message (store_expire.lua): only ever a CoordinationError,
            # and only where the record held no error.
            gap_error = isinstance(error, dict) and error.get("type") == "CoordinationError"
            if texts["er"] or not gap_error:
                raise IntegrityError("its error is not the record's")
        else:
            expected["error"] = json.loads(texts["er"]) if texts["er"] else None
        for name, value in expected.items():
            if data.get(name) != value:
                raise IntegrityError(f"its {name} is not the record's")

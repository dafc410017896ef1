"""`SubmitOptions`: the optional fields of a submit, as one typed value, and the one list.

Every submit field is declared once, here, with its wire name and whether it carries a
secret. `DispatchClient.submit()`, `Poller.submit()` and `DispatchRuntime.submit()` take
the same fields spelled the same (as an `options` value, as keywords typed by
`SubmitFields`, or both), and the request body is derived from these declarations, so a
new field is one line in `SubmitOptions` and one in `SubmitFields` (a test keeps the two
identical).

Secret-bearing fields (credentials, tokens, the webhook secret and headers, and all of
`extra`, which holds fields this library cannot judge) show as ``'***'`` in the repr and
are never logged: the body is built at the last moment and goes to the wire only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypedDict, get_args

import attrs

from ._errors import UsageError

__all__ = [
    "REASONING_MODES",
    "ReasoningMode",
    "SubmitFields",
    "SubmitOptions",
    "merge_options",
    "secret_field_names",
]

#: How hard the agent thinks (`reasoningMode`), as the official SDK's `ReasoningEffort`.
ReasoningMode = Literal["none", "low", "medium", "high"]
REASONING_MODES: Final[frozenset[str]] = frozenset(get_args(ReasoningMode))

#: `attrs` metadata keys: the camelCase name on the wire, and whether the value is secret.
WIRE: Final = "async_dispatch.wire"
SECRET: Final = "async_dispatch.secret"


def _shown_as_stars(value: object) -> str:
    """The repr of a secret field: whether it is set, never what it holds."""
    return "None" if value is None else "'***'"


def _check_type(expected: tuple[type, ...], what: str) -> Any:
    """An attrs validator that names the field and the type it got, never the value (a
    secret passed in the wrong field must not end up in the message)."""
    text_ok = str in expected

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        # A str is a Sequence too, but never the list a field wants.
        if not isinstance(value, expected) or (isinstance(value, (str, bytes)) and not text_ok):
            raise UsageError(f"{attribute.name} must be {what}, got {type(value).__name__}")

    return check


def _check_reasoning_mode(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or value not in REASONING_MODES):
        choices = ", ".join(sorted(REASONING_MODES))
        raise UsageError(f"reasoning_mode must be one of {choices}, got {value!r}")


def _field(wire: str, expected: tuple[type, ...], what: str, *, secret: bool = False) -> Any:
    """A submit field: sent as `wire` when set, of one of the `expected` types (`what`
    says which in an error), shown as ``'***'`` if `secret`."""
    return attrs.field(
        default=None,
        metadata={WIRE: wire, SECRET: secret},
        repr=_shown_as_stars if secret else True,
        validator=_check_type(expected, what),
    )


_STR: Final = (str,)
_BOOL: Final = (bool,)
_MAPPING: Final = (Mapping,)
_LIST: Final = (Sequence,)


@attrs.frozen(kw_only=True)
class SubmitOptions:
    """Everything a submit accepts besides the prompt (the body fields of the contract).

    None leaves a field out of the request, so the service's default applies. Values are
    sent as given (mappings and sequences as JSON objects and arrays). `extra` holds
    fields this library does not know yet; it may not override the named ones.

    Secret-bearing fields show as ``'***'`` in the repr: `callback_secret`,
    `callback_headers`, `secret_variables`, `user_resource_credentials`, `mcp_servers`,
    `vector_stores` and `extra`. What the service echoes of them in an error is redacted.
    """

    browser_window_id: str | None = _field("browserWindowId", _STR, "a str")
    #: ``"client"`` (the service's default, which needs `browser_window_id`), ``"cloud"``
    #: or ``"cloud_browser"``; not checked here, new modes may appear.
    execution_mode: str | None = _field("executionMode", _STR, "a str")
    clear_chat: bool | None = _field("clearChat", _BOOL, "a bool")
    previous_request_id: str | None = _field("previousRequestId", _STR, "a str")
    save_screenshots: bool | None = _field("saveScreenshots", _BOOL, "a bool")
    #: Structured output: a pydantic model, an attrs class or a dataclass (its JSON
    #: Schema is sent, and a poller's outcome carries the output as that type:
    #: `Outcome.output`), a JSON Schema mapping, or the wire's own
    #: ``{"type": "jsonSchema", "jsonSchema": {...}}`` (sent as given). See
    #: `async_dispatch._structured` for the types the converter supports.
    response_format: Mapping[str, Any] | type | None = attrs.field(
        default=None,
        metadata={WIRE: "responseFormat", SECRET: False},
        validator=_check_type((Mapping, type), "a mapping or a class"),
    )
    #: IANA name, e.g. ``"America/Los_Angeles"`` (the official SDK's default).
    time_zone: str | None = _field("timeZone", _STR, "a str")
    callback_url: str | None = _field("callbackUrl", _STR, "a str")
    callback_secret: str | None = _field("callbackSecret", _STR, "a str", secret=True)
    #: Headers the service sends with the webhook; values may be any JSON value.
    callback_headers: Mapping[str, Any] | None = _field(
        "callbackHeaders", _MAPPING, "a mapping", secret=True
    )
    #: Values the agent may type but never shows (passwords): ``{"password": "..."}``.
    secret_variables: Mapping[str, str] | None = _field(
        "secretVariables", _MAPPING, "a mapping", secret=True
    )
    #: Per-service credentials, e.g. ``{"jira": {...}, "salesforce": {...}}``.
    user_resource_credentials: Mapping[str, Any] | None = _field(
        "userResourceCredentials", _MAPPING, "a mapping", secret=True
    )
    #: MCP servers the agent may use; each may hold a bearer token or custom headers.
    mcp_servers: Sequence[Mapping[str, Any]] | None = _field(
        "mcpServers", _LIST, "a list", secret=True
    )
    #: Vector stores to search; external ones hold cloud credentials.
    vector_stores: Sequence[Mapping[str, Any]] | None = _field(
        "vectorStores", _LIST, "a list", secret=True
    )
    #: Values for the task's variables (any JSON); a file is `file_variable()`'s mapping.
    input_variables: Mapping[str, Any] | None = _field("inputVariables", _MAPPING, "a mapping")
    #: An uploaded file: ``{"key": key}`` with the key `DispatchClient.upload()` returns.
    attachment: Mapping[str, Any] | None = _field("attachment", _MAPPING, "a mapping")
    #: Earlier turns: ``[{"role": "user" | "assistant", "content": "..."}]``.
    chat_history: Sequence[Mapping[str, Any]] | None = _field("chatHistory", _LIST, "a list")
    additional_context: Mapping[str, str] | None = _field(
        "additionalContext", _MAPPING, "a mapping"
    )
    reasoning_mode: ReasoningMode | None = attrs.field(
        default=None,
        metadata={WIRE: "reasoningMode", SECRET: False},
        validator=_check_reasoning_mode,
    )
    cloud_browser_session_id: str | None = _field("cloudBrowserSessionId", _STR, "a str")
    execution_trace_context: Mapping[str, Any] | None = _field(
        "executionTraceContext", _MAPPING, "a mapping"
    )
    critic_context: Mapping[str, Any] | None = _field("criticContext", _MAPPING, "a mapping")
    #: Fields this library does not name, merged into the body untouched. Secret as a
    #: whole: nothing here can tell a password from a page size.
    extra: Mapping[str, Any] | None = attrs.field(
        default=None,
        metadata={SECRET: True},
        repr=_shown_as_stars,
        validator=_check_type(_MAPPING, "a mapping"),
    )

    def body(self, prompt: str) -> dict[str, Any]:
        """The JSON body of a submit: the prompt, the fields that are set in their wire
        spelling, then `extra` (which may not collide with them)."""
        body: dict[str, Any] = {"prompt": prompt}
        for field in _WIRE_FIELDS:
            value = getattr(self, field.name)
            if value is not None:
                if field.name == "response_format":
                    value = _response_format(value)
                body[field.metadata[WIRE]] = value
        for key, value in (self.extra or {}).items():
            if key in body:
                raise UsageError(
                    f"extra field {key!r} collides with a named submit option; use the option"
                )
            body[key] = value
        return body

    def secrets(self) -> tuple[str, ...]:
        """Every string inside the secret-bearing fields, longest first: what must be
        redacted from anything the service says back about this submit."""
        found: set[str] = set()
        for field in _SECRET_FIELDS:
            _strings_in(getattr(self, field.name), found)
        return tuple(sorted(found, key=len, reverse=True))

    def with_callback(
        self, url: str, secret: str | None, headers: Mapping[str, Any] | None
    ) -> SubmitOptions:
        """These options with the webhook fields filled in where they were left out."""
        merged_headers = {**(headers or {}), **(self.callback_headers or {})} or None
        return attrs.evolve(
            self,
            callback_url=self.callback_url or url,
            callback_secret=self.callback_secret if self.callback_secret is not None else secret,
            callback_headers=merged_headers,
        )


class SubmitFields(TypedDict, total=False):
    """`SubmitOptions`' fields as keyword arguments (``**fields``), for type checkers.

    Kept identical to `SubmitOptions` (names and types; a test compares them): see there
    for what each field means.
    """

    browser_window_id: str | None
    execution_mode: str | None
    clear_chat: bool | None
    previous_request_id: str | None
    save_screenshots: bool | None
    response_format: Mapping[str, Any] | type | None
    time_zone: str | None
    callback_url: str | None
    callback_secret: str | None
    callback_headers: Mapping[str, Any] | None
    secret_variables: Mapping[str, str] | None
    user_resource_credentials: Mapping[str, Any] | None
    mcp_servers: Sequence[Mapping[str, Any]] | None
    vector_stores: Sequence[Mapping[str, Any]] | None
    input_variables: Mapping[str, Any] | None
    attachment: Mapping[str, Any] | None
    chat_history: Sequence[Mapping[str, Any]] | None
    additional_context: Mapping[str, str] | None
    reasoning_mode: ReasoningMode | None
    cloud_browser_session_id: str | None
    execution_trace_context: Mapping[str, Any] | None
    critic_context: Mapping[str, Any] | None
    extra: Mapping[str, Any] | None


_FIELDS: Final = attrs.fields(SubmitOptions)
_NAMES: Final = frozenset(field.name for field in _FIELDS)
_WIRE_FIELDS: Final = tuple(field for field in _FIELDS if WIRE in field.metadata)
_SECRET_FIELDS: Final = tuple(field for field in _FIELDS if field.metadata[SECRET])


def secret_field_names() -> frozenset[str]:
    """The names of the secret-bearing fields: what no store may keep."""
    return frozenset(field.name for field in _SECRET_FIELDS)


def _response_format(value: Mapping[str, Any] | type) -> Mapping[str, Any]:
    """The wire's ``responseFormat`` for a field value (a type, a schema, or the wire's)."""
    from ._structured import output_type  # the converter is only loaded when used

    found = output_type(value)
    return value if found is None else found.response_format  # type: ignore[return-value]


def merge_options(options: SubmitOptions | None, fields: Mapping[str, Any]) -> SubmitOptions:
    """`options` with `fields` (keyword arguments) on top: a keyword given wins, even
    None (which leaves that field out). Unknown names are refused, values unshown."""
    if options is not None and not isinstance(options, SubmitOptions):
        raise UsageError(f"options must be a SubmitOptions, got {type(options).__name__}")
    unknown = sorted(set(fields) - _NAMES)
    if unknown:
        raise UsageError(
            f"unexpected submit option {unknown[0]!r}; the options are SubmitOptions' fields "
            "(pass fields the library does not know in extra={...})"
        )
    if not fields:
        return options or SubmitOptions()
    if options is None:
        return SubmitOptions(**fields)
    return attrs.evolve(options, **fields)


def _strings_in(value: object, found: set[str]) -> None:
    """Add every string leaf of a JSON-like `value` (mapping values, list items) to `found`."""
    if isinstance(value, str):
        if value:
            found.add(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings_in(item, found)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for item in value:
            _strings_in(item, found)

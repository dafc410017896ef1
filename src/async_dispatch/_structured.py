"""Typed structured output: a `responseFormat` from a type, and that type back from a reading.

``submit(..., response_format=Invoice)`` asks the service for output shaped like
`Invoice` (its JSON Schema goes in ``{"type": "jsonSchema", "jsonSchema": ...}``) and the
outcome carries the output as an `Invoice` (`Outcome.output`), checked on the way in. Four
kinds of type are understood:

- a pydantic model (pydantic is an optional extra: it is recognised by its
  ``model_json_schema``/``model_validate`` methods, never imported here);
- an attrs class or a dataclass: the schema is derived from the field annotations and the
  output is structured into the class by the small converter below (no new dependency);
- a JSON Schema (a mapping): sent as given; the output stays a mapping, checked against
  the keywords listed in `_check_schema` (the others are the service's to honour);
- the wire mapping itself (``{"type": "jsonSchema", ...}``): sent as given, output
  untyped, as before.

The converter takes what JSON gives: ``str``, ``int`` (``3.0`` is accepted, as JSON Schema
does), ``float`` (an int is accepted),
``bool``, ``None``, ``Any``, ``Literal`` of those, `enum.Enum` subclasses (by value),
``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``set[X]``/``frozenset[X]``, ``dict[str, X]``
(and the ``Sequence``/``Mapping`` spellings), unions of those (``X | None``), and nested
attrs classes and dataclasses. Fields with a default may be missing; keys the class does
not name are ignored (as the library ignores unknown wire fields). Anything else (a
recursive class, ``datetime``, a bare ``list``) is refused with `UsageError` when the
schema is derived, that is at submit time, never when the answer comes.

A task's output type is named by its import path (``module:qualname``), which is stored
with the task and travels with the outcome: the replica (or the restarted process) that
hands the outcome over resolves that path again, from the types its poller was given
(`Poller(output_types=...)`, and every type it submitted with), else by importing it. A
class defined inside a function cannot be imported: give it to every poller that may
hand its outcomes over.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import math
import types
import typing
from collections.abc import Callable, Mapping, MutableMapping, Sequence, Set
from typing import Any, Final, Literal, Union, get_args, get_origin

import attrs

from ._errors import OutputValidationError, UsageError

__all__ = ["OutputType", "import_path", "output_type", "resolve_output_type"]

#: The wire's wrapper around a JSON Schema (`remote-dispatch-api.md`).
_WIRE_TYPE: Final = "jsonSchema"
#: How much of an offending value an error message shows.
_EXCERPT: Final = 40


class _Invalid(Exception):
    """Where and how a value does not fit (turned into `OutputValidationError`)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _EXCERPT else f"{type(value).__name__} ({len(text)} chars)"


def _expected(where: str, what: str, value: object) -> _Invalid:
    return _Invalid(where, f"expected {what}, got {_shown(value)}")


# -- the converter: one node per annotation, built (and refused) before any submit ------


class _Node:
    """One annotation: its JSON Schema, and how a JSON value becomes its Python value."""

    __slots__ = ("convert", "schema")

    def __init__(self, schema: dict[str, Any], convert: Callable[[Any, str], Any]) -> None:
        self.schema = schema
        self.convert = convert


def _scalar(kind: type, json_type: str) -> _Node:
    def convert(value: Any, where: str) -> Any:
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _expected(where, "a number", value)
            if not math.isfinite(value):
                raise _expected(where, "a finite number", value)
            return float(value)
        if kind is int:
            # JSON has one number type: 3.0 is an integer (as JSON Schema says), 3.5 not.
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise _expected(where, "an integer", value)
            return value
        if not isinstance(value, kind):
            raise _expected(where, f"a {json_type}", value)
        return value

    return _Node({"type": json_type}, convert)


def _none(value: Any, where: str) -> None:
    if value is not None:
        raise _expected(where, "null", value)


def _anything(value: Any, where: str) -> Any:
    return value


def _literal(values: tuple[Any, ...], where_made: str) -> _Node:
    for value in values:
        if not (value is None or isinstance(value, (str, int, bool))) or isinstance(
            value, enum.Enum
        ):
            raise UsageError(f"{where_made}: Literal values must be str, int, bool or None")

    def convert(value: Any, where: str) -> Any:
        for allowed in values:
            # `True == 1` in Python: compare the types too.
            if type(value) is type(allowed) and value == allowed:
                return allowed
        raise _expected(where, f"one of {list(values)!r}", value)

    return _Node({"enum": list(values)}, convert)


def _enum(cls: type[enum.Enum], where_made: str) -> _Node:
    values = [member.value for member in cls]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        raise UsageError(f"{where_made}: an Enum's values must be str or int, for JSON")
    by_value = {(type(m.value), m.value): m for m in cls}

    def convert(value: Any, where: str) -> Any:
        member = by_value.get((type(value), value)) if isinstance(value, (str, int)) else None
        if member is None:
            raise _expected(where, f"one of {values!r}", value)
        return member

    return _Node({"enum": values}, convert)


def _sequence(item: _Node, make: Callable[[list[Any]], Any], unique: bool = False) -> _Node:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise _expected(where, "an array", value)
        return make([item.convert(v, f"{where}[{i}]") for i, v in enumerate(value)])

    schema: dict[str, Any] = {"type": "array", "items": item.schema}
    if unique:
        schema["uniqueItems"] = True
    return _Node(schema, convert)


def _fixed_tuple(items: list[_Node]) -> _Node:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, list) or len(value) != len(items):
            raise _expected(where, f"an array of {len(items)} items", value)
        return tuple(
            node.convert(v, f"{where}[{i}]")
            for i, (node, v) in enumerate(zip(items, value, strict=True))
        )

    schema = {
        "type": "array",
        "prefixItems": [node.schema for node in items],
        "minItems": len(items),
        "maxItems": len(items),
    }
    return _Node(schema, convert)


def _mapping(item: _Node) -> _Node:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, Mapping):
            raise _expected(where, "an object", value)
        return {k: item.convert(v, f"{where}.{k}") for k, v in value.items()}

    return _Node({"type": "object", "additionalProperties": item.schema}, convert)


def _union(options: list[_Node]) -> _Node:
    def convert(value: Any, where: str) -> Any:
        reasons = []
        for node in options:
            try:
                return node.convert(value, where)
            except _Invalid as exc:
                reasons.append(str(exc).split(": ", 1)[-1])
        raise _Invalid(where, " / ".join(reasons))

    return _Node({"anyOf": [node.schema for node in options]}, convert)


def _record(cls: type, building: set[type]) -> _Node:
    """An attrs class or a dataclass: an object of its init fields."""
    name = cls.__qualname__
    if cls in building:
        raise UsageError(f"{name} refers to itself: recursive output types are not supported")
    building.add(cls)
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError and friends: an annotation that does not resolve
        raise UsageError(f"the annotations of {name} do not resolve: {exc}") from exc
    fields: list[tuple[str, str, _Node, bool]] = []  # (json key, init name, node, required)
    if attrs.has(cls):
        for a in attrs.fields(cls):
            if not a.init:
                continue
            key = getattr(a, "alias", None) or a.name.lstrip("_")
            required = a.default is attrs.NOTHING
            fields.append(
                (key, key, _node(hints.get(a.name, a.type), f"{name}.{a.name}", building), required)
            )
    else:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            fields.append(
                (
                    f.name,
                    f.name,
                    _node(hints.get(f.name, f.type), f"{name}.{f.name}", building),
                    required,
                )
            )
    building.discard(cls)
    schema = {
        "type": "object",
        "title": cls.__name__,
        "properties": {key: node.schema for key, _, node, _ in fields},
        "required": [key for key, _, _, required in fields if required],
    }

    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, Mapping):
            raise _expected(where, f"an object ({name})", value)
        kwargs = {}
        for key, init_name, node, required in fields:
            if key in value:
                kwargs[init_name] = node.convert(value[key], f"{where}.{key}")
            elif required:
                raise _Invalid(where, f"missing {key!r} ({name})")
        try:
            return cls(**kwargs)
        except Exception as exc:  # the class's own validators refused the values
            raise _Invalid(where, f"{name} refused the values: {exc}") from exc

    return _Node(schema, convert)


_SCALARS: Final[dict[Any, tuple[type, str]]] = {
    str: (str, "string"),
    int: (int, "integer"),
    float: (float, "number"),
    bool: (bool, "boolean"),
}
_SEQUENCES: Final = {list: list, Sequence: list, typing.Sequence: list, tuple: tuple}
_SETS: Final = {set: set, frozenset: frozenset, Set: frozenset, typing.AbstractSet: frozenset}
_MAPPINGS: Final = (dict, Mapping, MutableMapping, typing.Mapping, dict)


def _node(annotation: Any, where: str, building: set[type]) -> _Node:
    """The node for one annotation, or `UsageError` naming where it is unsupported."""
    if annotation in _SCALARS:
        kind, json_type = _SCALARS[annotation]
        return _scalar(kind, json_type)
    if annotation is None or annotation is type(None):
        return _Node({"type": "null"}, _none)
    if annotation is Any:
        return _Node({}, _anything)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return _literal(args, where)
    if (
        origin is Union
        or (origin is None and isinstance(annotation, types.UnionType))
        or (origin is types.UnionType)
    ):
        return _union([_node(arg, where, building) for arg in args])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum(annotation, where)
    if isinstance(annotation, type) and (
        attrs.has(annotation) or dataclasses.is_dataclass(annotation)
    ):
        return _record(annotation, building)
    if origin in _SEQUENCES and args:
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return _sequence(_node(args[0], f"{where}[]", building), tuple)
            return _fixed_tuple([_node(arg, f"{where}[]", building) for arg in args])
        return _sequence(_node(args[0], f"{where}[]", building), list)
    if origin in _SETS and args:
        return _sequence(_node(args[0], f"{where}[]", building), _SETS[origin], unique=True)
    if origin in _MAPPINGS and len(args) == 2:
        if args[0] is not str:
            raise UsageError(f"{where}: a mapping's keys must be str (JSON object keys)")
        return _mapping(_node(args[1], f"{where}[]", building))
    raise UsageError(
        f"{where}: {annotation!r} is not supported in an output type (supported: str, int, "
        "float, bool, None, Any, Literal, Enum, list/tuple/set/dict of those, unions, "
        "nested attrs classes and dataclasses)"
    )


# -- JSON Schema mappings: checked for the common keywords -----------------------------

_JSON_TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
}


def _check_schema(schema: Any, value: Any, where: str) -> None:
    """Check `value` against the keywords of `schema` that decide its shape: ``type``,
    ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``,
    ``items``, ``prefixItems``, ``anyOf``/``oneOf`` (as "any of"), ``allOf``. Others
    (formats, bounds, ``$ref``) are not checked here: the service is asked to honour
    them, and this check is about whether the output can be used as the shape it names.
    """
    if schema is True or not isinstance(schema, Mapping):
        return
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_JSON_TYPES.get(name, lambda v: True)(value) for name in names):
            raise _expected(where, " or ".join(map(str, names)), value)
    if "enum" in schema and not any(type(value) is type(v) and value == v for v in schema["enum"]):
        raise _expected(where, f"one of {list(schema['enum'])!r}", value)
    if "const" in schema and not (
        type(value) is type(schema["const"]) and value == schema["const"]
    ):
        raise _expected(where, repr(schema["const"]), value)
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            reasons = []
            for option in schema[combined]:
                try:
                    _check_schema(option, value, where)
                    break
                except _Invalid as exc:
                    reasons.append(str(exc).split(": ", 1)[-1])
            else:
                raise _Invalid(where, " / ".join(reasons))
    for part in schema.get("allOf", ()):
        _check_schema(part, value, where)
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise _Invalid(where, f"missing {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check_schema(properties[key], item, f"{where}.{key}")
            elif extra is False:
                raise _Invalid(where, f"unexpected key {key!r}")
            else:
                _check_schema(extra, item, f"{where}.{key}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", ())
        for i, item in enumerate(value):
            if i < len(prefix):
                _check_schema(prefix[i], item, f"{where}[{i}]")
            elif "items" in schema:
                _check_schema(schema["items"], item, f"{where}[{i}]")


# -- the public face --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OutputType:
    """One output type: what the service is asked for, and how its answer is checked.

    Built by `output_type()`; the poller keeps one per type it has met.
    """

    #: The import path (``module:qualname``) stored with each task, or None for a plain
    #: JSON Schema (nothing to import: the task stores the schema's checker instead).
    path: str | None
    #: The type itself (None for a JSON Schema mapping).
    type: Any = attrs.field(repr=False)
    #: The JSON Schema sent in ``responseFormat``.
    schema: Mapping[str, Any] = attrs.field(repr=False)
    _convert: Callable[[Any], Any] = attrs.field(repr=False, alias="convert")

    @property
    def response_format(self) -> dict[str, Any]:
        """The wire's ``responseFormat`` for this type."""
        return {"type": _WIRE_TYPE, "jsonSchema": dict(self.schema)}

    def validate(self, content: Any) -> Any:
        """`content` (the reading's structured output) as this type.

        Raises:
            OutputValidationError: it does not fit; the message says where.
        """
        try:
            return self._convert(content)
        except _Invalid as exc:
            raise OutputValidationError(
                f"structured output does not fit {self.name}: {exc}"
            ) from None

    @property
    def name(self) -> str:
        return self.path or "the JSON Schema"


def _is_pydantic(value: Any) -> bool:
    return isinstance(value, type) and all(
        callable(getattr(value, m, None)) for m in ("model_json_schema", "model_validate")
    )


def import_path(cls: type) -> str:
    """``module:qualname``: how a task names its output type."""
    return f"{cls.__module__}:{cls.__qualname__}"


def output_type(spec: Any) -> OutputType | None:
    """The `OutputType` for a submit's `response_format`, or None for the wire mapping
    (``{"type": "jsonSchema", ...}``: sent as given, output untyped).

    Raises:
        UsageError: `spec` is not a pydantic model, attrs class, dataclass or mapping, or
            one of its annotations is not supported (the message says which).
    """
    if isinstance(spec, Mapping):
        if spec.get("type") == _WIRE_TYPE and "jsonSchema" in spec:
            return None
        schema = dict(spec)

        def check(content: Any) -> Any:
            _check_schema(schema, content, "$")
            return content

        return OutputType(path=None, type=None, schema=schema, convert=check)
    if _is_pydantic(spec):
        model = spec

        def validate(content: Any) -> Any:
            try:
                return model.model_validate(content)
            except Exception as exc:  # pydantic.ValidationError, without importing it
                first = str(exc).splitlines()
                raise _Invalid("$", " ".join(line.strip() for line in first[:4])) from None

        return OutputType(
            path=import_path(spec),
            type=spec,
            schema=spec.model_json_schema(),
            convert=validate,
        )
    if isinstance(spec, type) and (attrs.has(spec) or dataclasses.is_dataclass(spec)):
        node = _record(spec, set())
        return OutputType(
            path=import_path(spec),
            type=spec,
            schema=node.schema,
            convert=lambda content: node.convert(content, "$"),
        )
    raise UsageError(
        "response_format must be a pydantic model, an attrs class, a dataclass, a JSON "
        f"Schema mapping or the wire's responseFormat mapping, got {type(spec).__name__}"
    )


def resolve_output_type(path: str, known: Mapping[str, OutputType]) -> OutputType:
    """The `OutputType` a stored import path names: from `known` (the poller's), else
    imported.

    Raises:
        OutputValidationError: the path does not name an importable class here (a class
            defined in a function, a module this replica lacks): the outcome's output
            cannot be checked, which is that outcome's failure, not the iterator's.
    """
    found = known.get(path)
    if found is not None:
        return found
    module_name, _, qualname = path.partition(":")
    if "<locals>" in qualname:
        raise OutputValidationError(
            f"the output type {path!r} is defined inside a function, so it cannot be "
            "imported here: give it to the poller with Poller(output_types=[...])"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        resolved = output_type(target)
    except Exception as exc:
        raise OutputValidationError(
            f"the output type {path!r} cannot be resolved in this process ({exc}): give it "
            "to the poller with Poller(output_types=[...])"
        ) from None
    if resolved is None:
        raise OutputValidationError(f"{path!r} does not name an output type")
    return resolved

"""Typed structured output: `response_format` from a type, `Outcome.output` as that type.

The converter (attrs classes and dataclasses, without pydantic) is held to properties:
whatever value a class can hold comes back equal from its JSON, the schema it derives
accepts that JSON, and no JSON at all makes it raise anything but `OutputValidationError`.
Then the whole path, on every store: the schema goes to the service, the outcome carries
the object, an output that does not fit is that outcome's typed failure, and in a fleet or
after a restart the type is found again by its import path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import GenericAlias
from typing import Any, Literal, Optional

import anyio
import attrs
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_dispatch import (
    SCHEMA_OUTPUT,
    MemoryStore,
    OutcomeKind,
    OutputValidationError,
    Poller,
    ResubmitPolicy,
    SubmitOptions,
    TaskStore,
    UsageError,
)
from async_dispatch._structured import _check_schema, _Invalid, output_type
from async_dispatch.sqlite import SQLiteStore
from async_dispatch.testing import simulator

# -- the types the tests use (module level: importable by path, as a replica would) ------


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass(frozen=True)
class Price:
    amount: float
    currency: Literal["EUR", "USD"] = "EUR"


@dataclasses.dataclass(frozen=True)
class Line:
    name: str
    price: Price
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Invoice:
    number: int
    lines: list[Line]
    paid: bool
    colour: Colour
    note: Optional[str] = None  # noqa: UP045 - the old spelling is supported too
    totals: dict[str, float] = dataclasses.field(default_factory=dict)


@attrs.frozen
class Job:
    title: str
    remote: bool
    salary: int | None = None


class Listing(pydantic.BaseModel):
    company: str
    openings: int


@dataclasses.dataclass
class Refusing:
    """A class whose own check refuses what the simulator makes up ("example")."""

    code: str

    def __post_init__(self) -> None:
        if self.code == "example":
            raise ValueError("code may not be 'example'")


class RefusingModel(pydantic.BaseModel):
    code: str

    @pydantic.field_validator("code")
    @classmethod
    def not_example(cls, value: str) -> str:
        if value == "example":
            raise ValueError("code may not be 'example'")
        return value


# -- the converter ----------------------------------------------------------------------


def test_a_dataclass_becomes_a_schema_and_comes_back_as_itself() -> None:
    found = output_type(Invoice)
    assert found is not None
    assert found.path == f"{__name__}:Invoice"
    assert found.response_format["type"] == "jsonSchema"
    schema = found.schema
    assert schema["required"] == ["number", "lines", "paid", "colour"]
    assert schema["properties"]["colour"] == {"enum": ["red", "green"]}
    line = schema["properties"]["lines"]["items"]
    assert line["properties"]["price"]["properties"]["currency"] == {"enum": ["EUR", "USD"]}
    data = {
        "number": 7.0,  # JSON's one number type: an integral float is an integer
        "lines": [{"name": "tea", "price": {"amount": 3}, "tags": ["hot"]}],
        "paid": False,
        "colour": "green",
        "unknown": "ignored, as unknown wire fields are",
    }
    assert found.validate(data) == Invoice(
        number=7,
        lines=[Line("tea", Price(3.0), ("hot",))],
        paid=False,
        colour=Colour.GREEN,
    )


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"number": "7", "lines": [], "paid": True, "colour": "red"}, "$.number"),
        ({"number": True, "lines": [], "paid": True, "colour": "red"}, "$.number"),
        ({"number": 7.5, "lines": [], "paid": True, "colour": "red"}, "$.number"),
        ({"number": 1, "lines": [{"name": "x"}], "paid": True, "colour": "red"}, "$.lines[0]"),
        ({"number": 1, "lines": [], "paid": True, "colour": "blue"}, "$.colour"),
        ({"number": 1, "lines": [], "paid": 1, "colour": "red"}, "$.paid"),
        ({"lines": [], "paid": True, "colour": "red"}, "missing 'number'"),
        ([1, 2], "expected an object"),
    ],
)
def test_what_does_not_fit_says_where(data: Any, where: str) -> None:
    found = output_type(Invoice)
    assert found is not None
    with pytest.raises(OutputValidationError, match=f"Invoice: .*{re.escape(where)}"):
        found.validate(data)


def test_an_attrs_class_and_a_pydantic_model_and_a_schema() -> None:
    job = output_type(Job)
    assert job is not None
    assert job.validate({"title": "dev", "remote": True}) == Job("dev", True)
    assert job.validate({"title": "dev", "remote": True, "salary": None}) == Job("dev", True)
    model = output_type(Listing)
    assert model is not None
    assert model.schema == Listing.model_json_schema()
    assert model.validate({"company": "A", "openings": 2}) == Listing(company="A", openings=2)
    with pytest.raises(OutputValidationError, match="openings"):
        model.validate({"company": "A"})
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    plain = output_type(schema)
    assert plain is not None
    assert plain.path is None
    assert plain.validate({"n": 1}) == {"n": 1}
    with pytest.raises(OutputValidationError, match="missing 'n'"):
        plain.validate({})
    assert output_type({"type": "jsonSchema", "jsonSchema": {}}) is None  # the wire's own


@dataclasses.dataclass
class Recursive:
    children: list[Recursive]


@pytest.mark.parametrize(
    ("annotation", "why"),
    [
        (list, "is not supported"),
        (datetime, "is not supported"),
        (dict[int, str], "keys must be str"),
        (Literal[1.5], "Literal values"),
        (set, "is not supported"),
    ],
)
def test_unsupported_annotations_are_refused_when_the_schema_is_derived(
    annotation: Any, why: str
) -> None:
    cls = dataclasses.make_dataclass("Odd", [("field", annotation)])
    with pytest.raises(UsageError, match=why):
        output_type(cls)


def test_a_recursive_class_and_a_non_type_are_refused() -> None:
    with pytest.raises(UsageError, match="refers to itself"):
        output_type(Recursive)
    with pytest.raises(UsageError, match="response_format must be"):
        output_type(42)


# Annotations the converter supports, with a strategy for the values each holds.
_LEAVES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (str, st.text(max_size=8)),
    (int, st.integers(-(2**53), 2**53)),
    (float, st.floats(allow_nan=False, allow_infinity=False)),
    (bool, st.booleans()),
    (type(None), st.none()),
    (Literal["a", "b", 3], st.sampled_from(["a", "b", 3])),
    (Colour, st.sampled_from(Colour)),
    (Price, st.builds(Price, st.floats(-1e6, 1e6), st.sampled_from(["EUR", "USD"]))),
]


def _extend(
    inner: st.SearchStrategy[tuple[Any, st.SearchStrategy[Any]]],
) -> st.SearchStrategy[tuple[Any, st.SearchStrategy[Any]]]:
    def list_of(pair: tuple[Any, Any]) -> tuple[Any, Any]:
        return GenericAlias(list, (pair[0],)), st.lists(pair[1], max_size=3)

    def tuple_of(pair: tuple[Any, Any]) -> tuple[Any, Any]:
        return GenericAlias(tuple, (pair[0], ...)), st.lists(pair[1], max_size=3).map(tuple)

    def dict_of(pair: tuple[Any, Any]) -> tuple[Any, Any]:
        alias = GenericAlias(dict, (str, pair[0]))
        return alias, st.dictionaries(st.text(max_size=4), pair[1], max_size=3)

    def optional(pair: tuple[Any, Any]) -> tuple[Any, Any]:
        return pair[0] | None, st.none() | pair[1]

    def pair_of(pairs: list[tuple[Any, Any]]) -> tuple[Any, Any]:
        (a, sa), (b, sb) = pairs
        return GenericAlias(tuple, (a, b)), st.tuples(sa, sb)

    return st.one_of(
        inner.map(list_of),
        inner.map(tuple_of),
        inner.map(dict_of),
        inner.map(optional),
        st.lists(inner, min_size=2, max_size=2).map(pair_of),
    )


ANNOTATED = st.recursive(st.sampled_from(_LEAVES), _extend, max_leaves=4)


@st.composite
def classes_and_values(draw: st.DrawFn) -> tuple[type, Any]:
    """A dataclass or attrs class of a few random fields, and a value of it."""
    pairs = draw(st.lists(ANNOTATED, min_size=1, max_size=4))
    names = [f"f{i}" for i in range(len(pairs))]
    if draw(st.booleans()):
        cls = dataclasses.make_dataclass(
            "Drawn", list(zip(names, [p[0] for p in pairs], strict=True))
        )
    else:
        cls = attrs.make_class(
            "Drawn", {n: attrs.field(type=p[0]) for n, p in zip(names, pairs, strict=True)}
        )
    values = {name: draw(pair[1]) for name, pair in zip(names, pairs, strict=True)}
    return cls, cls(**values)


def to_json(value: Any) -> Any:
    """What the service would send for `value`: JSON text, read back."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if attrs.has(type(v)):
            return {a.name: plain(getattr(v, a.name)) for a in attrs.fields(type(v))}
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return json.loads(json.dumps(plain(value)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes_and_values())
def test_every_value_comes_back_equal_from_its_json(drawn: tuple[type, Any]) -> None:
    cls, value = drawn
    found = output_type(cls)
    assert found is not None
    data = to_json(value)
    assert found.validate(data) == value
    _check_schema(found.schema, data, "$")  # the schema sent accepts what fits the class


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(classes_and_values(), JSON)
def test_no_json_raises_anything_but_output_validation_error(
    drawn: tuple[type, Any], data: Any
) -> None:
    found = output_type(drawn[0])
    assert found is not None
    with contextlib.suppress(OutputValidationError):
        found.validate(data)


@settings(max_examples=100, deadline=None)
@given(classes_and_values(), JSON)
def test_the_converter_and_its_schema_agree_on_what_fits(
    drawn: tuple[type, Any], data: Any
) -> None:
    """Whatever the converter accepts, the schema sent to the service accepts too."""
    found = output_type(drawn[0])
    assert found is not None
    try:
        found.validate(data)
    except OutputValidationError:
        return
    try:
        _check_schema(found.schema, data, "$")
    except _Invalid as exc:  # pragma: no cover - a disagreement is the failure
        pytest.fail(f"the converter accepted what its schema refuses: {exc}")


# -- the whole path ---------------------------------------------------------------------

pytestmark_async = pytest.mark.anyio
STORES = ["memory", "redis", "sqlite"]


def open_store(kind: str, request: pytest.FixtureRequest, path: Path, name: str = "") -> TaskStore:
    if kind == "redis":
        from async_dispatch.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        return RedisStore(url, name=name or request.getfixturevalue("redis_name"))
    if kind == "sqlite":
        return SQLiteStore(path / "tasks.db")
    return MemoryStore()


@pytestmark_async
@pytest.mark.parametrize("kind", STORES)
async def test_each_kind_of_type_comes_back_typed(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    async with (
        simulator(seed=21, time_scale=0.002) as sim,
        sim.client() as client,
        Poller(
            client, rate=200, initial_interval=0.01, store=open_store(kind, request, tmp_path)
        ) as poller,
    ):
        formats: dict[str, Any] = {
            "dataclass": Invoice,
            "attrs": Job,
            "pydantic": Listing,
            "schema": schema,
        }
        for label, response_format in formats.items():
            await poller.submit(
                f"/Operator {label}",
                context=label,
                response_format=response_format,
                extra={"simulate": {"outcome": "success"}},
            )
        with anyio.fail_after(20):
            got = {o.context: o async for o in poller}
    assert {label: o.kind for label, o in got.items()} == dict.fromkeys(
        formats, OutcomeKind.SUCCESS
    )
    assert isinstance(got["dataclass"].output, Invoice)
    assert isinstance(got["attrs"].output, Job)
    assert isinstance(got["pydantic"].output, Listing)
    assert got["schema"].output == got["schema"].structured == {"n": 1}
    assert got["schema"].output_type == SCHEMA_OUTPUT
    assert got["dataclass"].output_type == f"{__name__}:Invoice"
    # The schema went to the service: it made up output that fits it.
    assert all(task.has_format for task in sim.app.tasks.values())


@pytestmark_async
@pytest.mark.parametrize("kind", STORES)
async def test_output_that_does_not_fit_is_an_error_outcome_and_may_be_resubmitted(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    policy = ResubmitPolicy(
        attempts=2,
        wait=0.05,
        when=lambda outcome: isinstance(outcome.error, OutputValidationError),
        secret_options=lambda context: SubmitOptions(extra={"simulate": {"outcome": "success"}}),
    )
    async with (
        simulator(seed=22, time_scale=0.002) as sim,
        sim.client() as client,
        Poller(
            client,
            rate=200,
            initial_interval=0.01,
            resubmit=policy,
            store=open_store(kind, request, tmp_path),
        ) as poller,
    ):
        for cls in (Refusing, RefusingModel):
            await poller.submit(
                "/Operator refused",
                context=cls.__name__,
                response_format=cls,
                extra={"simulate": {"outcome": "success"}},
            )
        with anyio.fail_after(20):
            got = {o.context: o async for o in poller}  # no exception out of the iterator
    for name in ("Refusing", "RefusingModel"):
        outcome = got[name]
        assert outcome.kind is OutcomeKind.ERROR
        assert isinstance(outcome.error, OutputValidationError)
        assert "example" in str(outcome.error)
        assert outcome.output is None
        assert outcome.structured == {"code": "example"}  # the raw mapping stays
        assert outcome.status is not None
        assert outcome.status.raw_status == "success"
        assert len(outcome.attempts) == 2  # resubmitted once on it, as the policy said
    assert sim.stats.tasks_created == 4


@pytestmark_async
async def test_unsupported_types_are_refused_before_anything_is_sent() -> None:
    async with (
        simulator(seed=23, time_scale=0.002) as sim,
        sim.client() as client,
        Poller(client, rate=200) as poller,
    ):
        with pytest.raises(UsageError, match="refers to itself"):
            await poller.submit("/Operator x", response_format=Recursive)
        with pytest.raises(UsageError, match="must be a mapping or a class"):
            await poller.submit("/Operator x", response_format=[1])  # type: ignore[arg-type]
    assert sim.stats.tasks_created == 0


@pytestmark_async
async def test_the_client_alone_sends_the_derived_schema() -> None:
    async with simulator(seed=24, time_scale=0.002) as sim, sim.client() as client:
        rid = await client.submit("/Operator plain", response_format=Job)
        status = await client.wait(rid, timeout=20)
    assert status.structured_output is not None
    assert set(status.structured_output) == {"title", "remote", "salary"}


def fleet_store(request: pytest.FixtureRequest, name: str) -> TaskStore:
    from async_dispatch.redis import RedisStore

    # Short limits: a replica that leaves hands its checks over within a second.
    url = request.getfixturevalue("redis_url")
    return RedisStore(url, name=name, lease=1.0, outcome_idle=0.5)


@pytestmark_async
@pytest.mark.parametrize("told", [True, False])
async def test_a_fleet_replica_rebuilds_the_type_by_its_path(
    told: bool, request: pytest.FixtureRequest
) -> None:
    """The replica that hands the outcome over may not be the one that submitted: it finds
    the type by its import path, or in its own `output_types` for a class no import can
    reach (defined in a function, as here); one it cannot find is a typed failure."""

    @dataclasses.dataclass
    class Local:
        title: str

    name = request.getfixturevalue("redis_name")
    async with simulator(seed=25, time_scale=0.05) as sim, sim.client() as client:
        async with Poller(client, rate=200, store=fleet_store(request, name)) as submitter:
            for cls in (Local, Job):
                await submitter.submit(
                    "/Operator elsewhere",
                    context=cls.__name__,
                    response_format=cls,
                    extra={"simulate": {"outcome": "success", "duration": 1.0}},
                )
        # The submitting replica is gone; another takes over.
        async with Poller(
            client,
            rate=200,
            initial_interval=0.01,
            store=fleet_store(request, name),
            output_types=[Local] if told else [],
        ) as other:
            with anyio.fail_after(20):
                results = {outcome.context: outcome async for outcome in other}
    assert isinstance(results["Job"].output, Job)  # importable by its path: no setup
    local = results["Local"]
    if told:
        assert local.kind is OutcomeKind.SUCCESS
        assert isinstance(local.output, Local)
    else:
        assert local.kind is OutcomeKind.ERROR
        assert isinstance(local.error, OutputValidationError)
        assert "output_types" in str(local.error)
        assert local.structured == {"title": "example"}


@pytestmark_async
async def test_a_restart_on_sqlite_rebuilds_the_output(tmp_path: Path) -> None:
    async with simulator(seed=26, time_scale=0.05) as sim, sim.client() as client:
        async with Poller(client, rate=200, store=SQLiteStore(tmp_path / "t.db")) as first:
            await first.submit(
                "/Operator later",
                response_format=Invoice,
                extra={"simulate": {"outcome": "success", "duration": 0.5}},
            )
        async with Poller(
            client, rate=200, initial_interval=0.01, store=SQLiteStore(tmp_path / "t.db")
        ) as second:
            with anyio.fail_after(20):
                (outcome,) = [o async for o in second]
    assert outcome.kind is OutcomeKind.SUCCESS
    assert isinstance(outcome.output, Invoice)


def test_the_core_imports_and_converts_without_pydantic() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import dataclasses, async_dispatch\n"
        "from async_dispatch._structured import output_type\n"
        "@dataclasses.dataclass\n"
        "class A:\n    n: int\n"
        "assert output_type(A).validate({'n': 1}) == A(1)\n"
        "assert 'pydantic' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

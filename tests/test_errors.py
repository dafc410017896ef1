"""The exception tree: one root, HTTP failures by meaning, and the standard exceptions the
errors also are, so callers can catch them without knowing this library."""

from __future__ import annotations

import pytest

import async_dispatch
from async_dispatch import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchError,
    InvalidRequestIdError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)

HTTP_ERRORS = [
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    RateLimitedError,
    ServerError,
]


def test_every_public_error_is_a_dispatch_error() -> None:
    public = [getattr(async_dispatch, name) for name in async_dispatch.__all__]
    errors = [value for value in public if isinstance(value, type) and issubclass(value, Exception)]
    assert len(errors) >= 14
    assert all(issubclass(error, DispatchError) for error in errors)


@pytest.mark.parametrize("error", HTTP_ERRORS)
def test_http_errors_are_api_status_errors(error: type[APIStatusError]) -> None:
    assert issubclass(error, APIStatusError)


def test_http_errors_are_distinct_meanings() -> None:
    for error in HTTP_ERRORS:
        assert [other for other in HTTP_ERRORS if issubclass(error, other)] == [error]


@pytest.mark.parametrize(
    ("error", "standard"),
    [
        (UsageError, ValueError),
        (InvalidRequestIdError, ValueError),
        (DeadlineExceeded, TimeoutError),
    ],
)
def test_errors_are_also_the_standard_exception_they_resemble(
    error: type[Exception], standard: type[Exception]
) -> None:
    assert issubclass(error, standard)


@pytest.mark.parametrize(
    "error", [InvalidResponseError, TransportError, SubmitUncertainError, DeadlineExceeded]
)
def test_non_http_failures_are_not_api_status_errors(error: type[Exception]) -> None:
    assert not issubclass(error, APIStatusError)


def test_an_api_status_error_carries_what_happened() -> None:
    error = RateLimitedError(
        "HTTP 429: slow down",
        status_code=429,
        request_id="req_1",
        body_excerpt="too many",
        retry_after=2.5,
    )
    assert str(error) == "HTTP 429: slow down"
    assert (error.status_code, error.request_id, error.body_excerpt, error.retry_after) == (
        429,
        "req_1",
        "too many",
        2.5,
    )


def test_an_api_status_error_defaults_to_no_detail() -> None:
    error = ServerError("HTTP 500", status_code=500)
    assert (error.request_id, error.body_excerpt, error.retry_after) == (None, "", None)


def test_an_invalid_response_error_carries_its_status_and_excerpt() -> None:
    error = InvalidResponseError("not JSON", status_code=200, body_excerpt="<html>")
    assert (error.status_code, error.body_excerpt) == (200, "<html>")


def test_deadline_exceeded_says_what_to_do() -> None:
    error = DeadlineExceeded("req_1", 90)
    assert (error.request_id, error.timeout) == ("req_1", 90)
    assert "'req_1'" in str(error)
    assert "90s" in str(error)
    assert "wait again" in str(error)

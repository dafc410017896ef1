"""Uploading a file for a task: what `DispatchClient.upload()` needs besides HTTP.

An upload is two requests. The service hands out a presigned POST
(``POST /remote-dispatch/generate-file-upload-presigned-post``, with the API key); the file
then goes as a multipart form straight to that storage URL, *without* the key (a storage
bucket is not the service, and must never see its credentials). The storage key that
comes back in the presigned fields is what a submit refers to: ``attachment={"key": key}``,
or a file input variable built by `file_variable()`.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Mapping
from pathlib import PurePath
from typing import IO, Any, Final, TypeAlias

import anyio
import attrs
import httpx

from ._errors import InvalidResponseError, UsageError
from ._validation import is_loopback_host

__all__ = ["PresignedPost", "Uploadable", "file_variable", "read_upload"]

#: What `upload()` accepts: a path, the bytes themselves, or a file opened in binary mode.
Uploadable: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"

_DEFAULT_MIME: Final = "application/octet-stream"


def mime_type_of(filename: str) -> str:
    """The MIME type a file name suggests, as the official SDK guesses it."""
    return mimetypes.guess_type(filename)[0] or _DEFAULT_MIME


def file_variable(key: str, filename: str, *, mime_type: str | None = None) -> dict[str, str]:
    """An input variable that refers to an uploaded file, in the service's shape.

    Put it in `SubmitOptions.input_variables`, e.g.
    ``input_variables={"report": file_variable(key, "report.pdf")}``, with the `key` that
    `DispatchClient.upload()` returned. The MIME type is guessed from `filename` when not
    given.
    """
    if not isinstance(key, str) or not key:
        raise UsageError("key must be the non-empty storage key that upload() returned")
    if not isinstance(filename, str) or not filename:
        raise UsageError("filename must be a non-empty string")
    return {
        "source": "remoteDispatchUpload",
        "id": key,
        "filename": filename,
        "mimeType": mime_type or mime_type_of(filename),
    }


async def read_upload(file_or_path: object, filename: str | None) -> tuple[str, bytes]:
    """The name and content of what the caller wants uploaded, read off the event loop.

    A path is read with `anyio.Path`, a file object's ``read()`` runs in a worker thread
    (from its current position, as any reader would), bytes are taken as they are. The
    name defaults to the path's or the file's own base name; bytes need `filename`.
    """
    if filename is not None and (not isinstance(filename, str) or not filename.strip()):
        raise UsageError("filename must be a non-empty string")
    if isinstance(file_or_path, (str, os.PathLike)):
        path = anyio.Path(os.fspath(file_or_path))
        try:
            content = await path.read_bytes()
        except OSError as exc:
            shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
            raise UsageError(f"cannot read {shown!r} for upload: {exc.strerror}") from None
        return _base_name(filename or path.name), content
    if isinstance(file_or_path, (bytes, bytearray, memoryview)):
        if filename is None:
            raise UsageError("upload() of bytes needs filename=...: the service stores it by name")
        return _base_name(filename), bytes(file_or_path)
    read = getattr(file_or_path, "read", None)
    if not callable(read):
        raise UsageError(
            "upload() takes a path, bytes or a file opened in binary mode, got "
            f"{type(file_or_path).__name__}"
        )
    content = await anyio.to_thread.run_sync(read)
    if not isinstance(content, bytes):
        raise UsageError("the file must be opened in binary mode ('rb'): read() gave text")
    name = filename or getattr(file_or_path, "name", None)
    if not isinstance(name, str) or not name:
        raise UsageError("this file object has no name: pass filename=...")
    return _base_name(name), content


def _base_name(name: str) -> str:
    """The name without directories (the service wants a file name, not where it was)."""
    path = name.replace("\\", "/")
    base = "" if path.endswith("/") else PurePath(path).name
    if base in ("", ".", ".."):
        raise UsageError(f"no file name in {name!r}: pass filename=...")
    return base


@attrs.frozen
class PresignedPost:
    """Where and how to post one file: the storage `url` and the form `fields` to send.

    The fields (a policy and its signature) let anyone holding them upload for a while,
    so the repr leaves them out.
    """

    url: str
    fields: Mapping[str, str] = attrs.field(repr=False)

    @property
    def key(self) -> str:
        """The storage key the file will have: what a submit refers to."""
        return self.fields["key"]

    @classmethod
    def parse(cls, body: bytes, *, status_code: int) -> PresignedPost:
        """The service's answer, ``{"url": str, "fields": {"key": str, ...}}``, or
        `InvalidResponseError` (which names what is missing, never the values)."""
        try:
            data: Any = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise InvalidResponseError(
                "the upload endpoint did not answer a JSON object", status_code=status_code
            )
        url, fields = data.get("url"), data.get("fields")
        if not isinstance(url, str) or not url:
            raise InvalidResponseError(
                "the upload endpoint's answer has no url", status_code=status_code
            )
        if not isinstance(fields, dict) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in fields.items()
        ):
            raise InvalidResponseError(
                "the upload endpoint's fields are not an object of strings",
                status_code=status_code,
            )
        if not fields.get("key"):
            raise InvalidResponseError(
                "the upload endpoint's fields have no key", status_code=status_code
            )
        return cls(url, dict(fields))

    def check_url(self, *, allow_insecure: bool) -> httpx.URL:
        """The storage URL, if it is one we may send a file to: absolute http(s), and
        https unless it is loopback or the client allows insecure URLs."""
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise InvalidResponseError(
                "the upload endpoint's url is not an absolute http(s) URL", status_code=None
            )
        if url.scheme == "http" and not allow_insecure and not is_loopback_host(url.host):
            raise InvalidResponseError(
                f"refusing to upload over plain http:// to {url.host!r} (the file would "
                "travel unencrypted); pass allow_insecure=True if you really mean it",
                status_code=None,
            )
        return url

    def form(self, filename: str, content: bytes) -> tuple[bytes, str]:
        """The multipart body (every field, then ``file``) and its content type."""
        request = httpx.Request(
            "POST",
            self.url,
            data=dict(self.fields),
            files={"file": (filename, content, mime_type_of(filename))},
        )
        return request.read(), request.headers["content-type"]

    def where(self) -> str:
        """The storage URL without its query (which may carry a signature), for messages."""
        url = httpx.URL(self.url)
        return str(url.copy_with(query=None, fragment=None))

"""The service's file uploads: a presigned POST, and the storage bucket it points at.

The service hands out ``{"url", "fields"}`` and the client POSTs a multipart form (every
field, then ``file``) straight to storage, without the service's key: a real bucket ignores
it, so a client that sends it leaks its key to a third party. The simulator plays the
bucket too, on its own ``/_uploads`` path outside the API's base path (a client must use
the URL it was given, not build one), and records whether a key came along so a test can
prove it did not.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import hmac
import random
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["UPLOAD_PATH", "Upload", "UploadBucket", "UploadRefused"]

UPLOAD_PATH = "/_uploads"
"""Where the simulated bucket takes uploads (the ``url`` of every presigned POST)."""


@attrs.frozen
class Upload:
    """One file stored in the simulated bucket."""

    key: str
    filename: str
    data: bytes
    content_type: str | None
    owner: str
    """The API key that asked for the presigned POST (never sent to the bucket)."""
    api_key_sent: bool
    """Whether the upload request carried an ``x-api-key`` header (a client bug: it leaks)."""
    fields: Mapping[str, str]
    """The form fields that came with the file."""

    def __repr__(self) -> str:  # the owner is a key: keep it out of reprs
        return f"Upload(key={self.key!r}, size={len(self.data)}, api_key_sent={self.api_key_sent})"


class UploadRefused(Exception):
    """The bucket turns an upload away: ``status`` and an S3-style ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UploadBucket:
    """Presigned POSTs handed out, and the files uploaded with them."""

    def __init__(self, rng: random.Random, *, max_size: int) -> None:
        self._rng = rng
        self._secret = rng.getrandbits(128).to_bytes(16, "big")
        self.max_size = max_size
        self._issued: dict[str, tuple[str, str]] = {}  # key -> (owner, filename)
        self.uploads: dict[str, Upload] = {}

    def presign(self, owner: str, filename: str, bucket_url: str) -> dict[str, Any]:
        """The ``{"url", "fields"}`` answer for ``filename``, shaped like S3's."""
        safe = filename.replace("/", "_").replace("\\", "_") or "file"
        key = f"uploads/{self._rng.getrandbits(64):016x}/{safe}"
        self._issued[key] = (owner, safe)
        return {
            "url": bucket_url,
            "fields": {
                "key": key,
                "x-amz-algorithm": "AWS4-HMAC-SHA256",
                "x-amz-credential": "SIMULATOR/20260101/us-east-1/s3/aws4_request",
                "policy": "c2ltdWxhdG9yLXBvbGljeQ==",
                "x-amz-signature": self._signature(key),
            },
        }

    def store(self, content_type: str, body: bytes | None, *, api_key_sent: bool) -> Upload:
        """Check and keep one multipart upload (None: a body too large to read whole);
        raise `UploadRefused` as S3 would."""
        too_large = UploadRefused(400, "EntityTooLarge", "Your proposed upload is too large")
        if body is None:
            raise too_large
        fields, file_part = _parse_form(content_type, body)
        key = fields.get("key", "")
        issued = self._issued.get(key)
        if issued is None or not hmac.compare_digest(
            fields.get("x-amz-signature", ""), self._signature(key)
        ):
            raise UploadRefused(403, "AccessDenied", "Invalid according to Policy")
        if file_part is None:
            raise UploadRefused(400, "InvalidArgument", "POST requires exactly one file upload")
        data, file_type = file_part
        if len(data) > self.max_size:
            raise too_large
        owner, filename = issued
        upload = Upload(
            key=key,
            filename=filename,
            data=data,
            content_type=file_type,
            owner=owner,
            api_key_sent=api_key_sent,
            fields=fields,
        )
        self.uploads[key] = upload
        return upload

    def owns(self, owner: str, key: str) -> bool:
        """Whether ``key`` names a file ``owner`` uploaded."""
        upload = self.uploads.get(key)
        return upload is not None and upload.owner == owner

    def _signature(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()


def _parse_form(
    content_type: str, body: bytes
) -> tuple[dict[str, str], tuple[bytes, str | None] | None]:
    """The text fields of a multipart form, and its ``file`` part (bytes, content type)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UploadRefused(
            412,
            "PreconditionFailed",
            "Bucket POST must be of the enclosure-type multipart/form-data",
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise UploadRefused(400, "MalformedPOSTRequest", "The body is not a multipart form")
    fields: dict[str, str] = {}
    file_part: tuple[bytes, str | None] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "file":
            file_part = (data, part.get_content_type() if part.get("content-type") else None)
        elif file_part is None:  # S3 ignores fields after the file
            fields[name] = data.decode("utf-8", "replace")
    return fields, file_part

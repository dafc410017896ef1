"""`SubmitOptions`: the optional fields of a submit, as one typed value.

`DispatchClient.submit()` takes them as keyword arguments; the poller and the runtime
pass them along as one value, so a misspelt option fails type checking instead of being
forwarded through ``**kwargs`` until the service ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["SubmitOptions"]


@attrs.frozen(kw_only=True)
class SubmitOptions:
    """Everything `DispatchClient.submit()` accepts besides the prompt.

    None leaves a field out of the request, so the service's default applies. `extra`
    holds fields this library does not know yet; it may not override the named ones.
    """

    browser_window_id: str | None = None
    execution_mode: str | None = None
    clear_chat: bool | None = None
    previous_request_id: str | None = None
    save_screenshots: bool | None = None
    response_format: Mapping[str, Any] | None = None
    time_zone: str | None = None
    callback_url: str | None = None
    callback_secret: str | None = attrs.field(default=None, repr=False)
    callback_headers: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    extra: Mapping[str, Any] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `DispatchClient.submit()`."""
        return attrs.asdict(self, recurse=False)

    def with_callback(
        self, url: str, secret: str | None, headers: Mapping[str, str] | None
    ) -> SubmitOptions:
        """These options with the webhook fields filled in where they were left out."""
        merged_headers = {**(headers or {}), **(self.callback_headers or {})} or None
        return attrs.evolve(
            self,
            callback_url=self.callback_url or url,
            callback_secret=self.callback_secret if self.callback_secret is not None else secret,
            callback_headers=merged_headers,
        )

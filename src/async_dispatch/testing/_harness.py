"""Short ways to get a running simulator and a client bound to it, for tests and demos."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from ._config import SimulatorConfig
from ._simulator import Simulator

if TYPE_CHECKING:
    from async_dispatch import DispatchClient

__all__ = ["build_client", "simulator"]


@contextlib.asynccontextmanager
async def simulator(
    config: SimulatorConfig | None = None,
    *,
    webhook_client: httpx.AsyncClient | None = None,
    **overrides: Any,
) -> AsyncIterator[Simulator]:
    """Run an in-process simulator for the ``async with`` block.

    ``overrides`` replace fields of ``config`` (or of the default config)::

        async with simulator(seed=7, time_scale=0.01) as sim:
            async with sim.client() as client:
                ...
    """
    base = config if config is not None else SimulatorConfig()
    async with Simulator(attrs.evolve(base, **overrides), webhook_client=webhook_client) as sim:
        yield sim


def build_client(sim: Simulator, **kwargs: Any) -> DispatchClient:
    """A ``DispatchClient`` talking to ``sim`` in process (see ``Simulator.client``).

    Its submits run in ``cloud`` execution mode unless told otherwise: the service refuses
    the default (``client``) mode without a browser window, and a test rarely has one.
    """
    from async_dispatch import DispatchClient  # only here: the core needs no client

    kwargs.setdefault("api_key", sim.config.default_key)
    kwargs.setdefault("base_url", sim.base_url)
    kwargs.setdefault("execution_mode", "cloud")
    if "http_client" not in kwargs:
        kwargs["http_client"] = sim.http_client()
    return DispatchClient(**kwargs)

"""Name -> builder registry for the networks.

A builder is a function taking only keyword arguments with JSON-friendly
values (ints, strings, bools, lists, None) and returning an ``nn.Module``.
``build_net`` fills in the defaults and records ``{"name", "kwargs"}`` on the
returned net (``net_config(net)``), so a checkpoint can store it and rebuild
the same architecture with ``build_net_from_config``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

NetBuilder = Callable[..., nn.Module]
B = TypeVar("B", bound=NetBuilder)

NET_REGISTRY: dict[str, NetBuilder] = {}
"""Registered builders by name. Filled when ``cellcount.nets`` is imported."""

_CONFIG_ATTR = "net_config"


class UnknownNetError(ValueError):
    """Raised for a net name that is not registered; the message lists valid names."""


def _qualname(builder: NetBuilder) -> str:
    return f"{builder.__module__}.{builder.__qualname__}"


def register_net(name: str) -> Callable[[B], B]:
    """Decorator registering a builder under ``name``.

    Re-registering the same function (module reload) replaces it; a different
    function under a taken name is an error.
    """

    def decorator(builder: B) -> B:
        previous = NET_REGISTRY.get(name)
        if previous is not None and _qualname(previous) != _qualname(builder):
            raise ValueError(f"net {name!r} is already registered by {_qualname(previous)}")
        NET_REGISTRY[name] = builder
        return builder

    return decorator


def available_nets() -> list[str]:
    """Sorted names accepted by ``build_net``."""
    return sorted(NET_REGISTRY)


def _get_builder(name: str) -> NetBuilder:
    try:
        return NET_REGISTRY[name]
    except KeyError:
        valid = ", ".join(available_nets())
        raise UnknownNetError(f"unknown net {name!r}; valid nets: {valid}") from None


def _resolve_kwargs(name: str, builder: NetBuilder, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Builder kwargs with defaults filled in, normalised through JSON."""
    signature = inspect.signature(builder)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        accepted = ", ".join(signature.parameters) or "none"
        raise TypeError(f"net {name!r} got unknown kwargs {unknown}; accepted: {accepted}")
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    try:
        resolved: dict[str, Any] = json.loads(json.dumps(bound.arguments))
    except (TypeError, ValueError) as err:
        raise TypeError(f"kwargs of net {name!r} must be JSON-serialisable: {err}") from err
    return resolved


def build_net(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered net ``name``; its resolved config is kept on the net.

    Raises ``UnknownNetError`` (a ValueError) for unknown names and ``TypeError``
    for unknown or non-JSON kwargs.
    """
    builder = _get_builder(name)
    resolved = _resolve_kwargs(name, builder, kwargs)
    net = builder(**resolved)
    setattr(net, _CONFIG_ATTR, {"name": name, "kwargs": resolved})
    return net


def net_config(net: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "kwargs": {...}}`` recorded by ``build_net`` (JSON-friendly)."""
    config = getattr(net, _CONFIG_ATTR, None)
    if config is None:
        raise ValueError("this net was not made by build_net, so it has no recorded config")
    return json.loads(json.dumps(config))  # a copy the caller may mutate


def build_net_from_config(config: dict[str, Any]) -> nn.Module:
    """Inverse of ``net_config``: rebuild the architecture (weights not included)."""
    return build_net(config["name"], **config.get("kwargs", {}))

"""Segmentation networks: plain ``nn.Module``s behind a name registry.

Every net maps a float RGB batch ``(N, 3, H, W)`` in [0, 1] to logits
``(N, 1, H, W)``; H and W must be multiples of ``net.input_multiple``.

    net = build_net("c_resunet")   # the paper model, 1,707,287 trainable params
    net_config(net)                # {"name": "c_resunet", "kwargs": {"n_features_start": 16}}
"""

from . import resunet, smp_unet, unet  # noqa: F401  (import registers the builders)
from .base import SegmentationNet, check_input, padded_size
from .registry import (
    NET_REGISTRY,
    UnknownNetError,
    available_nets,
    build_net,
    build_net_from_config,
    net_config,
    register_net,
)

__all__ = [
    "NET_REGISTRY",
    "SegmentationNet",
    "UnknownNetError",
    "available_nets",
    "build_net",
    "build_net_from_config",
    "check_input",
    "net_config",
    "padded_size",
    "register_net",
]

"""Microscope files (OME-TIFF, OME-Zarr, CZI, ND2, LIF, ...) through bioio, an optional extra.

``pip install 'cellcount[formats]'`` brings bioio with its OME-TIFF and OME-Zarr
readers; vendor formats need their plugin too (``bioio-czi``, ``bioio-nd2``,
``bioio-lif``). A file is reduced to one 2-D plane (:class:`PlaneChoice`): a scene,
a time point, a z-plane or a z-projection, and a channel by index or name. The
physical pixel size (µm) comes from the metadata when the file records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellcount.data.errors import DataError

# Suffixes read through bioio (plain .tif/.png stay with tifffile/Pillow).
SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr", ".zarr", ".czi", ".nd2", ".lif", ".lsm",
            ".oib", ".oir", ".vsi", ".ims", ".sld")  # fmt: skip
PLUGINS = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif", ".lsm": "bioio-tifffile",
           ".oib": "bioio-bioformats", ".oir": "bioio-bioformats", ".vsi": "bioio-bioformats",
           ".ims": "bioio-imaris", ".sld": "bioio-sldy"}  # fmt: skip
PROJECTIONS = ("max", "mean")


@dataclass(frozen=True)
class PlaneChoice:
    """Which 2-D plane of a multi-dimensional file to count.

    Attributes:
        scene: scene index or name (None: the first).
        time: time point index.
        z: z-plane index (None: the only plane, or an error naming ``--z`` /
            ``--z-project`` when there are several).
        z_project: ``max`` or ``mean`` over all z-planes instead of one plane.
        channel: channel index or name (None: the only channel, else an error
            listing the names).
    """

    scene: int | str | None = None
    time: int = 0
    z: int | None = None
    z_project: str | None = None
    channel: int | str | None = None

    def __post_init__(self) -> None:
        if self.z_project is not None and self.z_project not in PROJECTIONS:
            raise ValueError(f"z projection must be one of {', '.join(PROJECTIONS)}, "
                             f"got {self.z_project!r}")  # fmt: skip


@dataclass(frozen=True)
class Plane:
    """A plane read from a microscope file: (H, W) data and pixel size in µm (or None)."""

    data: np.ndarray
    pixel_size_um: float | None


def is_microscope_file(path: Path | str) -> bool:
    """Whether ``path`` is read through bioio (by its suffix; OME-TIFF and Zarr included)."""
    name = str(path).lower().rstrip("/")
    return name.endswith(SUFFIXES)


def read_plane(path: Path | str, choice: PlaneChoice | None = None) -> Plane:
    """The chosen 2-D plane of a microscope file.

    Raises:
        DataError: bioio or the format's plugin is missing (naming what to install),
            or the choice does not fit the file (naming the option and the valid values).
    """
    choice = choice or PlaneChoice()
    image = _open(Path(path))
    _choose_scene(image, choice.scene, path)
    dims = image.dims
    channel = _channel_index(image, choice.channel, path)
    _check_index("--time", choice.time, dims.T, path)
    if choice.z_project is not None:
        stack = image.get_image_data("ZYX", T=choice.time, C=channel)
        data = stack.max(axis=0) if choice.z_project == "max" else stack.mean(axis=0)
    else:
        z = _z_index(choice.z, dims.Z, path)
        data = image.get_image_data("YX", T=choice.time, C=channel, Z=z)
    return Plane(np.asarray(data), _pixel_size(image))


def _open(path: Path) -> Any:
    try:
        from bioio import BioImage
    except ImportError:
        raise DataError(f"{path}: reading microscope files needs the formats extra: "
                        f"pip install 'cellcount[formats]'") from None  # fmt: skip
    try:
        return BioImage(path)
    except Exception as err:  # bioio raises its own types for unknown formats
        if type(err).__name__ != "UnsupportedFileFormatError":
            raise DataError(f"cannot read {path}: {err}") from None
        suffix = next((s for s in PLUGINS if str(path).lower().endswith(s)), "")
        plugin = PLUGINS.get(suffix, "the bioio plugin for this format")
        raise DataError(f"{path}: no installed reader for this format; install {plugin} "
                        f"(pip install {plugin}) next to cellcount[formats]") from None  # fmt: skip


def _choose_scene(image: Any, scene: int | str | None, path: Path | str) -> None:
    scenes = list(image.scenes)
    if scene is None:
        return
    if isinstance(scene, int) or str(scene).isdigit():
        index = int(scene)
        _check_index("--scene", index, len(scenes), path)
        image.set_scene(index)
    elif scene in scenes:
        image.set_scene(scene)
    else:
        raise DataError(f"{path}: no scene {scene!r}; its scenes are {', '.join(scenes)}")


def _channel_index(image: Any, channel: int | str | None, path: Path | str) -> int:
    names = [str(name) for name in (image.channel_names or [])]
    count = image.dims.C
    listed = ", ".join(f"{i} ({n})" for i, n in enumerate(names)) or f"0..{count - 1}"
    if channel is None:
        if count == 1:
            return 0
        raise DataError(f"{path} has {count} channels: {listed}; choose one with --channel "
                        f"(its index or name)")  # fmt: skip
    if isinstance(channel, str) and not channel.isdigit():
        if channel not in names:
            raise DataError(f"{path}: no channel named {channel!r}; its channels are {listed}")
        return names.index(channel)
    index = int(channel)
    _check_index("--channel", index, count, path)
    return index


def _z_index(z: int | None, count: int, path: Path | str) -> int:
    if z is None:
        if count == 1:
            return 0
        raise DataError(f"{path} has {count} z-planes; choose one with --z (0..{count - 1}) "
                        f"or project them with --z-project max")  # fmt: skip
    _check_index("--z", z, count, path)
    return z


def _check_index(option: str, index: int, count: int, path: Path | str) -> None:
    if not 0 <= index < count:
        raise DataError(f"{path}: {option} {index} is out of range; valid: 0..{count - 1}")


def _pixel_size(image: Any) -> float | None:
    """The X pixel size in µm when recorded (square pixels assumed, as counting does)."""
    sizes = image.physical_pixel_sizes
    value = getattr(sizes, "X", None)
    return float(value) if value else None

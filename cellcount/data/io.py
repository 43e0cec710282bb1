"""Reading images and masks, and pairing them by file name.

This is the only module that knows about files on disk. Everything it returns is
in one convention:

* images: float32 array (H, W, 3), RGB, values in [0, 1];
* masks: bool array (H, W), True on cell pixels;
* instance labels: int32 array (H, W), 0 background, one positive id per cell.

Errors are :class:`DataError` and always name the offending file and the fix.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError
from scipy import ndimage as ndi

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LAYOUTS = ("folder", "instances", "fnc_v1", "fnc_v2")


class DataError(ValueError):
    """A data file or folder cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class Sample:
    """One image with its ground-truth mask.

    Attributes:
        name: file stem, unique within a dataset (used in splits and caches).
        image: path of the image file.
        mask: path of the mask file (binary mask, or instance labels when ``labels``).
        group: sub-collection the sample came from ("trainval"/"test" for FNC v2, else "").
        labels: the mask file holds instance labels (one id per cell).
    """

    name: str
    image: Path
    mask: Path
    group: str = ""
    labels: bool = False


def read_array(path: Path) -> np.ndarray:
    """Decode an image file into its raw array (any dtype, (H, W) or (H, W, C))."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            array = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                array = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(
            f"cannot read image {path}: {err}. Check that the file is a complete "
            f"PNG/TIFF/JPEG (re-export it), or remove it from the folder."
        ) from err
    if array.size == 0:
        raise DataError(f"image {path} is empty (zero size); remove it from the folder.")
    return array


def to_rgb_float(array: np.ndarray, source: Path | str = "<array>") -> np.ndarray:
    """Normalise an 8/16-bit or float, grey/RGB/RGBA array to RGB float32 in [0, 1].

    Integer images are divided by their dtype's maximum (255 or 65535); float images
    must already be in [0, 1]. Alpha is dropped; grey is repeated to three channels.

    Returns:
        float32 array (H, W, 3) with values in [0, 1].
    """
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"image {source} has shape {array.shape}; expected (H, W), (H, W, 3) or "
            f"(H, W, 4). Save it as a single-plane grey or RGB image."
        )
    array = array[..., :3] if array.shape[-1] >= 3 else np.repeat(array, 3, axis=-1)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    image = array.astype(np.float32)
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise DataError(
            f"float image {source} has values outside [0, 1] or NaN/inf; "
            f"rescale it to [0, 1] or save it as 8/16-bit."
        )
    return image


def read_image(path: Path | str, channel: int | None = None) -> np.ndarray:
    """Read an image file as RGB float32 (H, W, 3) in [0, 1].

    Args:
        path: PNG, TIFF (also multi-page / multi-channel) or JPEG file.
        channel: for multi-channel images, the channel that holds the cells; it
            becomes a grey image. Needed when an image has other than 1, 3 or 4
            channels (e.g. a (C, H, W) TIFF stack).
    """
    path = Path(path)
    array = read_array(path)
    if channel is not None or _is_stack(array):
        array = select_channel(array, channel, path)
    return to_rgb_float(array, path)


def _is_stack(array: np.ndarray) -> bool:
    """Channels-first stack (C, H, W) or channels-last with an unusual channel count."""
    return array.ndim == 3 and array.shape[-1] not in (1, 3, 4)


def select_channel(array: np.ndarray, channel: int | None, source: Path | str) -> np.ndarray:
    """The 2-D plane ``channel`` of a (C, H, W) or (H, W, C) array (C = the smaller axis)."""
    if array.ndim == 2:
        return array
    axis = 0 if array.ndim == 3 and array.shape[0] < array.shape[-1] else array.ndim - 1
    n_channels = array.shape[axis]
    if channel is None:
        raise DataError(
            f"image {source} has {n_channels} channels (shape {array.shape}); choose the "
            f"one with the stained cells with --channel 0..{n_channels - 1}."
        )
    if array.ndim != 3 or not 0 <= channel < n_channels:
        raise DataError(
            f"image {source} has shape {array.shape}: cannot take channel {channel}; "
            f"valid channels are 0..{n_channels - 1} of a 3-D image."
        )
    return np.take(array, channel, axis=axis)


def read_mask(path: Path | str) -> np.ndarray:
    """Read a binary mask file as bool (H, W).

    Accepted encodings: values {0, 1}, {0, 255} or {0, 65535} (or a single one of
    them); RGB masks must have equal channels. Anything else is an error, because
    silently binarising e.g. an instance-label image would merge touching cells.
    """
    path = Path(path)
    array = read_array(path)
    if array.ndim == 3:
        if not (array == array[..., :1]).all():
            raise DataError(f"mask {path} has differing colour channels; save it as a grey image.")
        array = array[..., 0]
    values = np.unique(array)
    top = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1
    if not set(values.tolist()) <= {0, 1, top}:
        raise DataError(
            f"mask {path} is not binary: it has {len(values)} distinct values "
            f"(e.g. {values[:5].tolist()}). Expected 0 for background and 1 or {top} "
            f"for cells; threshold it, or use an instance-label layout."
        )
    return array > 0


def read_labels(path: Path | str) -> np.ndarray:
    """Read an instance-label image (one integer id per cell, 0 background) as int32 (H, W).

    A binary mask (values {0, 1}, {0, 255} or {0, 65535}) is accepted too: its
    4-connected components become the instances.
    """
    path = Path(path)
    array = read_array(path)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"label image {path} has shape {array.shape} and dtype {array.dtype}; expected a "
            f"single-plane 8/16/32-bit integer image with 0 for background and one id per cell."
        )
    top = np.iinfo(array.dtype).max
    if set(np.unique(array).tolist()) <= {0, 1, top}:
        return ndi.label(array > 0)[0].astype(np.int32)
    return array.astype(np.int32)


def separate_instances(labels: np.ndarray) -> np.ndarray:
    """Binary mask of instance labels with touching cells kept apart.

    A cell pixel is dropped when one of its 8 neighbours belongs to a cell with
    a larger id, so touching cells are separated by a 1-px gap (on the side of
    the smaller id) and their connected components stay distinct.

    Args:
        labels: int (H, W) instance labels, 0 background.

    Returns:
        bool (H, W) mask.
    """
    return (labels > 0) & (ndi.maximum_filter(labels, size=3) <= labels)


def training_mask(truth: np.ndarray) -> np.ndarray:
    """The binary training target of a ground truth: a bool mask as is, labels separated."""
    return truth if truth.dtype == bool else separate_instances(truth)


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist; check the data root/layout setting.")
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files)


def pair_by_name(
    image_dir: Path,
    mask_dir: Path,
    group: str = "",
    skip_unpaired: bool = False,
    labels: bool = False,
) -> list[Sample]:
    """Pair image and mask files that share a stem.

    Raises:
        DataError: when an image lacks a mask or a mask lacks an image, unless
            ``skip_unpaired`` is set (then they are skipped with a warning).
    """
    images = {p.stem: p for p in image_files(image_dir)}
    masks = {p.stem: p for p in image_files(mask_dir)}
    problems = [f"image {images[s]} has no mask in {mask_dir}" for s in images.keys() - masks]
    problems += [f"mask {masks[s]} has no image in {image_dir}" for s in masks.keys() - images]
    if problems:
        message = "; ".join(sorted(problems))
        if not skip_unpaired:
            raise DataError(
                f"{message}. Give every image a mask with the same file name, "
                f"or set data.skip_bad_files=true to skip them."
            )
        log.warning("skipping unpaired files: %s", message)
    names = sorted(images.keys() & masks.keys())
    return [Sample(n, images[n], masks[n], group, labels) for n in names]


def find_samples(
    root: Path | str, layout: str = "folder", colour: str = "yellow", skip_unpaired: bool = False
) -> list[Sample]:
    """List the (image, mask) pairs of a dataset.

    Layouts:
        ``folder``: ``root/images/*`` and ``root/masks/*`` (bring your own data).
        ``instances``: ``root/images/*`` and instance-label images ``root/labels/*``
        (e.g. the DSB 2018 nuclei set); touching cells stay separate.
        ``fnc_v1``: ``root/all_images/images/*`` and ``root/all_masks/masks/*``.
        ``fnc_v2``: ``root/<colour>/{trainval,test}/images/*`` with masks in
        ``.../ground_truths/masks/*``; ``Sample.group`` tells the split folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist; set data.root=<folder with your data>.")
    if layout == "folder":
        samples = pair_by_name(root / "images", root / "masks", "", skip_unpaired)
    elif layout == "instances":
        samples = pair_by_name(root / "images", root / "labels", "", skip_unpaired, labels=True)
    elif layout == "fnc_v1":
        samples = pair_by_name(
            root / "all_images" / "images", root / "all_masks" / "masks", "", skip_unpaired
        )
    elif layout == "fnc_v2":
        samples = _fnc_v2_samples(root / colour, skip_unpaired)
    else:
        raise DataError(f"unknown data layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}.")
    if not samples:
        raise DataError(f"no image/mask pairs found under {root} (layout {layout!r}).")
    check_unique_names(s.name for s in samples)
    return samples


def _fnc_v2_samples(colour_root: Path, skip_unpaired: bool) -> list[Sample]:
    samples: list[Sample] = []
    for group in ("trainval", "test"):
        part = colour_root / group
        if part.is_dir():
            masks = part / "ground_truths" / "masks"
            samples += pair_by_name(part / "images", masks, group, skip_unpaired)
    if not samples:
        raise DataError(
            f"no FNC v2 split folders in {colour_root}; expected {colour_root}/trainval/images."
        )
    return samples


def check_unique_names(names: Iterable[str]) -> None:
    """Raise :class:`DataError` when two samples share a name (names key splits and caches)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"two images share the name {name!r}; rename one of them.")
        seen.add(name)


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's image and ground truth; check their sizes agree.

    Returns:
        image float32 (H, W, 3) in [0, 1]; truth (H, W): bool mask, or int32
        instance labels for a ``labels`` sample.
    """
    image = read_image(sample.image)
    mask = read_labels(sample.mask) if sample.labels else read_mask(sample.mask)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but image {sample.image} "
            f"is {image.shape[1]}x{image.shape[0]} (width x height); they must match."
        )
    return image, mask


def read_artifact_boxes(path: Path | str) -> list[dict[str, int | str]]:
    """Read artefact boxes from a CSV with columns ``image,y,x,height,width`` (pixels).

    ``image`` is the image's file stem. Returns one dict per row.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {
                "image": Path(r["image"]).stem,
                **{k: int(r[k]) for k in ("y", "x", "height", "width")},
            }
            for r in rows
        ]
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise DataError(
            f"artefact box file {path} is unreadable ({err!r}); it needs the columns "
            f"image,y,x,height,width with integer pixel values."
        ) from err

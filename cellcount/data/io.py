"""Reading images and masks, and pairing them by file name.

This is the only module that knows about files on disk. Everything it returns is
in one convention:

* images: float32 array (H, W, 3), RGB, values in [0, 1], normalised by
  :func:`cellcount.data.normalize.normalize_intensity`;
* masks: bool array (H, W), True on cell pixels;
* instance labels: int32 array (H, W), 0 background, one positive id per cell.

Errors are :class:`DataError` and always name the offending file and the fix.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError
from scipy import ndimage as ndi

from cellcount.data.errors import DataError
from cellcount.data.microscope import PlaneChoice, is_microscope_file, read_plane
from cellcount.data.normalize import (
    DEFAULT_NORMALIZATION,
    Normalization,
    Normalized,
    normalize_intensity,
)
from cellcount.data.points import POINT_SUFFIXES, annotation_names, find_annotation

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LAYOUTS = ("folder", "instances", "points", "fnc_v1", "fnc_v2")


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


@dataclass(frozen=True)
class RawImage:
    """Decoded pixels before normalisation.

    Attributes:
        array: raw values, any numeric dtype, (H, W), (H, W, C) or (C, H, W).
        alpha: the file declares its last channel an alpha (PNG LA/RGBA, TIFF
            ExtraSamples), so it may be dropped.
        rgb: the channels are colours (PNG, JPEG, TIFF photometric RGB), not
            separate fluorescence channels.
    """

    array: np.ndarray
    alpha: bool = False
    rgb: bool = True


def read_array(path: Path) -> np.ndarray:
    """Decode a mask or label file into its raw array (any dtype, (H, W) or (H, W, C)).

    Palette images keep their indices: in a mask or label image they are the data.
    """
    return read_raw(path, expand_palette=False).array


def read_raw(path: Path, expand_palette: bool = True) -> RawImage:
    """Decode an image file; palette images come back expanded through their palette."""
    try:
        is_tiff = path.suffix.lower() in (".tif", ".tiff")
        raw = _read_tiff(path) if is_tiff else _read_pillow(path, expand_palette)
    except Image.DecompressionBombError as err:
        raise DataError(
            f"image {path} is too large to open safely ({err}). Cut it into tiles of at "
            f"most {(Image.MAX_IMAGE_PIXELS or 0) // 1_000_000} Mpx and count those (e.g. in "
            f"Fiji: Image > Stacks > Tools > Montage to Stack)."
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(
            f"cannot read image {path}: {err}. Check that the file is a complete "
            f"PNG/TIFF/JPEG (re-export it), or remove it from the folder."
        ) from err
    if raw.array.size == 0:
        raise DataError(f"image {path} is empty (zero size); remove it from the folder.")
    return raw


def _read_pillow(path: Path, expand_palette: bool) -> RawImage:
    with Image.open(path) as img:
        picture: Image.Image = img
        if expand_palette and img.mode in ("P", "PA"):  # in a photo the colours count
            transparent = "transparency" in img.info or img.mode == "PA"
            picture = img.convert("RGBA" if transparent else "RGB")
        alpha = picture.mode in ("LA", "RGBA", "La", "RGBa")
        return RawImage(np.asarray(picture), alpha=alpha)


def _read_tiff(path: Path) -> RawImage:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = tif.asarray()
        extra = tuple(getattr(page, "extrasamples", ()) or ())
        photometric = getattr(page, "photometric", None)
    alpha = any(int(value) in (1, 2) for value in extra)  # associated / unassociated alpha
    rgb = photometric is not None and int(photometric) == int(tifffile.PHOTOMETRIC.RGB)
    return RawImage(array, alpha=alpha, rgb=rgb)


def to_rgb_float(
    array: np.ndarray, source: Path | str = "<array>",
    normalization: Normalization = DEFAULT_NORMALIZATION, alpha: bool = False,
) -> np.ndarray:  # fmt: skip
    """Normalise a grey/RGB(A) array of any numeric dtype to RGB float32 (H, W, 3) in [0, 1].

    An image without contrast comes back black (use :func:`normalize_image` to
    learn why); a real alpha channel is dropped; grey is repeated to three channels.
    """
    return normalize_image(RawImage(array, alpha=alpha), source, normalization).image


def normalize_image(
    raw: RawImage, source: Path | str = "<array>",
    normalization: Normalization = DEFAULT_NORMALIZATION,
) -> Normalized:  # fmt: skip
    """Channels resolved (alpha dropped, grey -> RGB), then intensities normalised.

    Returns:
        :class:`Normalized` with image float32 (H, W, 3) in [0, 1] and its warning.
    """
    array = _colour_channels(raw, source)
    result = normalize_intensity(array, normalization, source)
    image = result.image if result.image.shape[-1] == 3 else np.repeat(result.image, 3, axis=-1)
    return Normalized(image, result.warning, result.countable)


def _colour_channels(raw: RawImage, source: Path | str) -> np.ndarray:
    """(H, W, 1) grey or (H, W, 3) RGB from a decoded image, dropping only a real alpha."""
    array = raw.array[..., None] if raw.array.ndim == 2 else raw.array
    if array.ndim != 3:
        planes = "x".join(str(n) for n in array.shape[:-2])
        raise DataError(
            f"image {source} is a stack of {planes} planes of {array.shape[-1]}x"
            f"{array.shape[-2]} px (shape {array.shape}); cellcount counts 2-D images "
            f"(grey, RGB or channels last). Save one plane or a projection (e.g. Fiji: "
            f"Image > Stacks > Z Project), or a 3-D (C, H, W) stack and choose --channel."
        )
    channels = array.shape[-1]
    if channels in (2, 4) and _is_alpha(array[..., -1], raw.alpha):
        array, channels = array[..., :-1], channels - 1
    if channels == 1 or (channels == 3 and raw.rgb):
        return array
    raise DataError(
        f"image {source} has {channels} channels that are not an RGB colour image (shape "
        f"{raw.array.shape}); choose the one with the stained cells with "
        f"--channel 0..{channels - 1}."
    )


def _is_alpha(plane: np.ndarray, declared: bool) -> bool:
    """A declared alpha channel, or (for bare arrays) a constant last plane."""
    return declared or bool(plane.min() == plane.max())


def read_image(
    path: Path | str, channel: int | None = None,
    normalization: Normalization = DEFAULT_NORMALIZATION,
) -> np.ndarray:  # fmt: skip
    """Read an image file as RGB float32 (H, W, 3) in [0, 1]; see :func:`read_normalized`."""
    return read_normalized(path, channel, normalization).image


def read_normalized(
    path: Path | str, channel: int | str | None = None,
    normalization: Normalization = DEFAULT_NORMALIZATION, plane: PlaneChoice | None = None,
) -> Normalized:  # fmt: skip
    """Read and normalise an image file, with the warning of :func:`normalize_intensity`.

    Args:
        path: PNG, TIFF (also multi-page / multi-channel) or JPEG file, or a
            microscope file read through bioio (:mod:`cellcount.data.microscope`).
        channel: for multi-channel images, the channel that holds the cells; it
            becomes a grey image. Needed when the channels are not RGB (e.g. a
            (C, H, W) stack or a 4-channel fluorescence TIFF). Microscope files
            also take a channel name.
        normalization: how raw values map to [0, 1] (the model's own at count time).
        plane: scene, time point and z-plane of a microscope file.
    """
    path = Path(path)
    if is_microscope_file(path):
        choice = plane or PlaneChoice()
        if channel is not None:
            choice = replace(choice, channel=channel)
        found = read_plane(path, choice)
        result = normalize_image(RawImage(found.data), path, normalization)
        return replace(result, pixel_size_um=found.pixel_size_um)
    if isinstance(channel, str):
        channel = _channel_number(channel, path)
    raw = read_raw(path)
    if channel is not None or _is_stack(raw.array):
        raw = RawImage(select_channel(raw.array, channel, path))
    return normalize_image(raw, path, normalization)


def _channel_number(channel: str, path: Path) -> int:
    if not channel.isdigit():
        raise DataError(f"{path}: channel names ({channel!r}) need a microscope file with "
                        f"channel metadata; give the channel's index instead")  # fmt: skip
    return int(channel)


def _is_stack(array: np.ndarray) -> bool:
    """Channels-first stack (C, H, W) or channels-last with an unusual channel count."""
    return array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)


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
    if not images:
        raise DataError(f"{image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); put them "
                        f"there, or point data.root at the folder that has them")  # fmt: skip
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
        ``points``: ``root/images/*`` and point annotations ``root/points/<name>.csv``
        (or ``.xml``, ``CellCounter_<name>.xml``, ``.zip``, ``.roi``; see
        :mod:`cellcount.data.points`), grown into cells when loaded.
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
    elif layout == "points":
        samples = _point_samples(root, skip_unpaired)
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


def _point_samples(root: Path, skip_unpaired: bool) -> list[Sample]:
    """Images of ``root/images`` paired with their annotations in ``root/points``."""
    folder = root / "points"
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; the points layout needs images/ and points/.")
    samples, missing = [], []
    for image in image_files(root / "images"):
        found = find_annotation(folder, image.stem)
        if found is None or found.suffix.lower() not in POINT_SUFFIXES:
            missing.append(f"{image.name} (looked for {annotation_names(image.stem)})")
        else:
            samples.append(Sample(image.stem, image, found, "", labels=True))
    if missing and not skip_unpaired:
        raise DataError(f"no point annotation in {folder} for: {'; '.join(missing)}. Add them, "
                        f"or set data.skip_bad_files=true to skip these images.")  # fmt: skip
    if missing:
        log.warning("skipping images without points: %s", "; ".join(missing))
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


def load_pair(
    sample: Sample, normalization: Normalization = DEFAULT_NORMALIZATION
) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's image (normalised) and ground truth; check their sizes agree.

    Returns:
        image float32 (H, W, 3) in [0, 1]; truth (H, W): bool mask, or int32
        instance labels for a ``labels`` sample.
    """
    image = read_image(sample.image, normalization=normalization)
    if sample.mask.suffix.lower() in POINT_SUFFIXES:
        from cellcount.data.point_targets import points_to_labels
        from cellcount.data.points import read_truth_points

        return image, points_to_labels(image, read_truth_points(sample.mask, image.shape))
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

"""Probability map -> labelled cells: the paper's post-processing (docs/method.md#post-processing).

Pipeline (every step uses 4-connectivity, as the authors' code did):

1. :func:`binarize`: ``prob > threshold`` (strict).
2. :func:`clean`: fill background components smaller than ``max_hole_area``, then
   drop objects smaller than ``min_object_area``.
3. :func:`split_touching`: distance transform D; ``Dmax = maximum_filter(D,
   max_filter_size)``; peaks are the in-mask pixels whose Dmax equals the maximum
   of Dmax over a ``peak_footprint`` square (whole plateaus); peak blobs smaller
   than ``min_peak_area`` are dropped; the rest are the markers of a
   (compact) watershed of ``-D`` inside the mask.
4. The watershed labels are counted **directly** and renumbered 1..K in raster
   order of each object's first pixel (the order ``ndimage.label`` would give).

Why the labels are never re-labelled from a binary image: since scikit-image
0.25 a compact watershed (``compactness > 0``) with ``watershed_line=True``
leaves gaps in the 1-px lines, so two split cells can touch 4-connectedly and a
re-labelling merges them (docs/method.md#post-processing "Version pitfalls"). We keep the lines
(they
separate cells in overlays and mirror the original masks) but take the counts
from the watershed labels themselves, so the result does not depend on the
scikit-image version. Labels are int32, so there is no uint8 wrap-around at 256
cells (a latent bug of the original).

Resolution (a property of the method, kept): equal cells whose centres are at
most ``max_filter_size`` px apart along an axis share one Dmax plateau, hence
one marker and one label. Because the filter is square, the diagonal limit is
about ``sqrt(2)`` times larger (radius-20 discs 36 px apart diagonally stay one
cell; 42 px apart they split).

Objects without a marker: the original watershed leaves any mask component that
holds no surviving peak blob at label 0, so it vanishes from the count. This
happens when a small object sits within ``peak_footprint / 2`` px of a larger
one (the larger Dmax dominates the shared peak window) or when all its peak
blobs are smaller than ``min_peak_area``. ``PostprocessParams.keep_unmarked``
(default False, the paper's behaviour) gives each such component a label of its
own instead; that can only raise the count (recall up, possibly more false
positives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import watershed

FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)

# Cell diameter (px) at which the paper's constants are exact. It is the median
# equivalent-circle diameter sqrt(4 * area / pi) of FNC v1 yellow cells (the
# project's fnc_samples/yellow sample): the 37 cells of its stats_df.csv have
# median area 1199 px (39.1 px), the 58 objects of its four masks 1223 px
# (39.5 px). Rounded to 40 px, it equals the peak footprint (40 px). (The
# file's ``diameter`` column, a maximal extent, has median 53 px; it is not used.)
REFERENCE_CELL_DIAMETER = 40.0


@dataclass(frozen=True)
class SplitProfile:
    """How finely touching cells are split, relative to the paper's constants.

    The paper's windows (maximum filter 0.75 d, peak footprint 1 d for cells of
    diameter d) merge crowded cells whose centres are closer than about one
    diameter; for counting, a finer profile can be chosen on validation images
    together with the counting threshold (docs/method.md#counting-post-processing).

    Attributes:
        window: factor on ``max_filter_size`` and ``peak_footprint``, in (0, 1].
        min_area: factor on ``min_object_area``, in (0, 1].
        keep_unmarked: give components without a marker a label of their own.
    """

    window: float = 1.0
    min_area: float = 1.0
    keep_unmarked: bool = False

    def __post_init__(self) -> None:
        for name in ("window", "min_area"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"split profile {name} must be in (0, 1], got {value}")

    def as_dict(self) -> dict[str, float | bool]:
        return {"window": self.window, "min_area": self.min_area,
                "keep_unmarked": self.keep_unmarked}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, float | bool] | None) -> SplitProfile:
        """A profile from :meth:`as_dict` output; None gives the paper's."""
        return cls() if values is None else cls(**values)  # type: ignore[arg-type]


PAPER_SPLIT = SplitProfile()
# Candidates tried on the validation images for counting (the paper's first).
COUNTING_SPLITS = (
    PAPER_SPLIT,
    SplitProfile(window=0.75, min_area=0.5, keep_unmarked=True),
    SplitProfile(window=0.75, min_area=0.25, keep_unmarked=True),
    SplitProfile(window=0.6, min_area=0.5, keep_unmarked=True),
    SplitProfile(window=0.5, min_area=0.5, keep_unmarked=True),
)


@dataclass(frozen=True)
class PostprocessParams:
    """Post-processing constants (defaults: the paper's, docs/method.md#post-processing).

    Attributes:
        max_hole_area: background components (4-connected) with fewer pixels are
            filled; this includes small background pockets touching the border.
        min_object_area: objects (4-connected) with fewer pixels are removed.
        max_filter_size: side (px) of the square maximum filter applied to the
            distance transform.
        peak_footprint: side (px) of the square window in which a peak must be
            the maximum.
        min_peak_area: peak blobs (4-connected) with fewer pixels are dropped.
        compactness: compact-watershed weight (dimensionless: D and distances
            both scale with the cell size, so it is not rescaled).
        watershed_line: draw 1-px zero lines between split cells (counts never
            depend on it; see the module docstring).
        keep_unmarked: give mask components without a marker their own label
            instead of dropping them (the paper drops them).
    """

    max_hole_area: int = 600
    min_object_area: int = 200
    max_filter_size: int = 30
    peak_footprint: int = 40
    min_peak_area: int = 25
    compactness: float = 1.0
    watershed_line: bool = True
    keep_unmarked: bool = False

    @classmethod
    def from_cell_diameter(
        cls, diameter: float, split: SplitProfile = PAPER_SPLIT, **overrides: float | bool
    ) -> PostprocessParams:
        """Scale the paper's constants to an expected cell diameter (px).

        Areas scale with ``(diameter / REFERENCE_CELL_DIAMETER) ** 2`` and window
        sizes with ``diameter / REFERENCE_CELL_DIAMETER``; ``split`` then scales
        the splitting windows and the minimum object area further. Each value is
        rounded to the nearest integer and kept >= 1. At ``diameter == 40`` with
        the paper's profile the paper's constants come back exactly.
        ``overrides`` set other fields.
        """
        if not diameter > 0:
            raise ValueError(f"cell diameter must be positive, got {diameter}")
        scale = diameter / REFERENCE_CELL_DIAMETER
        base = cls()

        def size(value: int) -> int:
            return max(1, round(value * scale * split.window))

        def area(value: int, factor: float = 1.0) -> int:
            return max(1, round(value * scale * scale * factor))

        fields: dict[str, float | bool] = {
            "max_hole_area": area(base.max_hole_area),
            "min_object_area": area(base.min_object_area, split.min_area),
            "max_filter_size": size(base.max_filter_size),
            "peak_footprint": size(base.peak_footprint),
            "min_peak_area": area(base.min_peak_area),
            "keep_unmarked": split.keep_unmarked,
        }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]


def binarize(prob: np.ndarray, threshold: float | np.floating) -> np.ndarray:
    """Foreground where ``prob > threshold`` (strict, as the paper).

    The threshold is first rounded to the map's float dtype, so a float32 map
    value stored as ``0.6`` is not above a threshold of 0.6 whatever the type of
    ``threshold`` (NumPy 2 would otherwise compare a float32 map with a
    ``np.float64`` threshold in float64, and with a Python float in float32;
    NumPy 1, as the authors used, compared in float32).

    Args:
        prob: float (H, W) cell probabilities in [0, 1].
        threshold: scalar in [0, 1].

    Returns:
        bool (H, W).
    """
    if prob.ndim != 2:
        raise ValueError(f"expected a 2-D probability map, got shape {prob.shape}")
    dtype = prob.dtype if np.issubdtype(prob.dtype, np.floating) else np.float64
    return np.asarray(prob > np.asarray(threshold, dtype=dtype))


def _component_sizes(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected labels (int32, 0 = off) of ``binary`` and pixel count per label."""
    labels, _ = ndi.label(binary, structure=FOUR_CONNECTED)
    return labels, np.bincount(labels.ravel())


def _keep_labels(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Zero the labels with ``keep[label]`` False; renumber the rest 1..K in order."""
    keep[0] = False
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return lut[labels], int(keep.sum())


def fill_small_holes(binary: np.ndarray, max_hole_area: int) -> np.ndarray:
    """Turn background components with fewer than ``max_hole_area`` pixels on.

    Like the original ``remove_small_holes(area_threshold, connectivity=1)``:
    strict ``<`` and any background component counts, also one that touches the
    image border. Returns bool (H, W).
    """
    labels, sizes = _component_sizes(~binary)
    small = sizes < max_hole_area
    small[0] = False  # label 0 is the foreground here
    return binary | small[labels]


def remove_small_objects(binary: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 4-connected objects with fewer than ``min_area`` pixels (strict ``<``).

    Implemented with ``ndimage.label`` + ``bincount`` rather than skimage, whose
    0.26 ``max_size`` replacement uses ``<=``. Returns bool (H, W).
    """
    labels, sizes = _component_sizes(binary)
    return _keep_labels(labels, sizes >= min_area)[0] > 0


def _clean_components(binary: np.ndarray, params: PostprocessParams) -> tuple[np.ndarray, int]:
    """:func:`clean`, returning the cleaned objects as int32 labels 1..K and K."""
    filled = fill_small_holes(binary.astype(bool, copy=False), params.max_hole_area)
    labels, sizes = _component_sizes(filled)
    # Dropping whole components leaves the others' connectivity unchanged, so
    # these labels are the components of the cleaned mask (raster order kept).
    return _keep_labels(labels, sizes >= params.min_object_area)


def clean(binary: np.ndarray, params: PostprocessParams | None = None) -> np.ndarray:
    """Fill small holes, then remove small objects (docs/method.md#post-processing (steps 3-4)).

    Args:
        binary: bool (H, W) foreground.
        params: constants; the paper's when None.

    Returns:
        bool (H, W) cleaned mask.
    """
    return _clean_components(binary, params or PostprocessParams())[0] > 0


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each mask pixel to the nearest background pixel.

    Equal to ``ndimage.distance_transform_edt(mask)`` but computed per
    4-connected component on its bounding box grown by 1 px, which is exact: the
    open disc around a pixel up to its nearest background pixel is 4-connected
    foreground, so lies in the same component, and that background pixel is
    then within 1 px of the component's box. Far cheaper than a full-image
    transform when cells cover a small part of the image.

    Args:
        mask: bool (H, W).

    Returns:
        float64 (H, W), 0 outside the mask.
    """
    components, _ = ndi.label(mask, structure=FOUR_CONNECTED)
    return _component_distances(components)


def _component_distances(components: np.ndarray) -> np.ndarray:
    """:func:`distance_transform` of ``components > 0`` given its 4-connected labels."""
    mask = components > 0
    out = np.zeros(components.shape, dtype=np.float64)
    for value, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        grown = _grow(box, 1, mask.shape)
        own = components[grown] == value
        out[grown][own] = ndi.distance_transform_edt(mask[grown])[own]
    return out


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` widened by ``margin`` px on every side, clipped to ``shape``."""
    return tuple(
        slice(max(part.start - margin, 0), min(part.stop + margin, size))
        for part, size in zip(box, shape, strict=True)
    )


def find_markers(
    mask: np.ndarray,
    distance: np.ndarray,
    params: PostprocessParams,
    floor: float | None = None,
) -> np.ndarray:
    """Watershed markers from the distance transform (docs/method.md#post-processing (steps 6-9)).

    Reproduces ``peak_local_max(Dmax, footprint=ones((f, f)), labels=mask,
    exclude_border=False)`` of scikit-image < 0.18 (the paper's era): a pixel is
    a peak when it is in the mask, its Dmax equals the maximum of the masked Dmax
    over the f x f window (ndimage's origin for even f), and Dmax exceeds the
    minimum of Dmax over the image. Whole plateaus are kept. ``maximum_filter``
    with a square size is separable, so this is much faster than
    ``peak_local_max`` and does not depend on its version.

    Args:
        mask: bool (H, W) cleaned mask.
        distance: float (H, W) Euclidean distance transform of ``mask``.
        params: constants.
        floor: the image-wide minimum of Dmax when ``mask`` is a crop of a
            larger image; None computes it from this array.

    Returns:
        int32 (H, W) markers, 0 = none, 1..M.
    """
    dmax = ndi.maximum_filter(distance, size=params.max_filter_size, mode="constant")
    floor = float(dmax.min()) if floor is None else floor
    above_floor = dmax > floor
    masked = dmax  # Dmax is masked in place: one full-size float array fewer
    masked[~mask] = 0.0
    window_max = ndi.maximum_filter(masked, size=params.peak_footprint, mode="constant")
    peaks = mask & (masked == window_max) & above_floor
    # Label the peak blobs once, then drop the small ones and renumber the rest
    # (same result as remove_small_objects followed by label, one pass fewer).
    blobs, sizes = _component_sizes(peaks)
    return _keep_labels(blobs, sizes >= params.min_peak_area)[0]


def relabel_raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber a label image 1..K by the raster position of each object's first pixel.

    This is the order ``ndimage.label`` gives, which the paper's greedy matching
    iterates in. Absent label values are skipped, so the result is sequential.

    Args:
        labels: int (H, W) label image, 0 = background.

    Returns:
        int32 (H, W), 0 = background, 1..K.
    """
    values, firsts = _first_pixels(labels)
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int32)
    lut[values[np.argsort(firsts, kind="stable")]] = np.arange(1, values.size + 1)
    return lut[labels]


def _first_pixels(
    labels: np.ndarray, origin: tuple[int, int] = (0, 0), width: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Present label values and the raster index of each one's first pixel.

    ``origin`` and ``width`` place a crop in a larger image of that width (the
    crop's own width when 0).
    """
    width = width or labels.shape[1]
    values, firsts = [], []
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # The first row of the bounding box holds the object's first pixel.
        col = box[1].start + int(np.argmax(labels[box[0].start, box[1]] == value))
        values.append(value)
        firsts.append((box[0].start + origin[0]) * width + col + origin[1])
    return np.asarray(values, dtype=np.int64), np.asarray(firsts, dtype=np.int64)


def _label_unmarked(mask: np.ndarray, labels: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Add a label for each 4-connected mask component that holds no marker."""
    components, count = ndi.label(mask, structure=FOUR_CONNECTED)
    marked = np.zeros(count + 1, dtype=bool)
    marked[components[markers > 0]] = True
    unmarked = ~marked
    unmarked[0] = False
    if not unmarked.any():
        return labels
    lut = np.zeros(count + 1, dtype=np.int32)
    start = int(labels.max()) + 1
    lut[unmarked] = np.arange(start, start + int(unmarked.sum()), dtype=np.int32)
    extra = lut[components]
    return np.where(extra > 0, extra, labels)


def split_touching(mask: np.ndarray, params: PostprocessParams | None = None) -> np.ndarray:
    """Split touching cells of a cleaned mask with a marker-based watershed.

    Objects far enough apart never meet in either maximum-filter window, so
    they are grouped into clusters (see :func:`_clusters`) and, when that is
    cheaper, each cluster is processed on its own small crop: the cost grows
    about linearly with the number of cells instead of with the image size.
    The markers, hence the cells and their count, are exactly those of the
    full-image computation. Pixel labels are too, except rarely a few pixels
    where two cells touch: skimage's watershed heap breaks cost ties between
    markers in an order that depends on every marker pushed, so even the
    full-image result is one arbitrary resolution of such ties (tested).

    Args:
        mask: bool (H, W) cleaned mask.
        params: constants; the paper's when None.

    Returns:
        int32 (H, W) labels, 0 = background (and watershed lines), 1..K in raster
        order of first pixel. Components without a marker are 0 unless
        ``params.keep_unmarked``.
    """
    components, _ = ndi.label(mask, structure=FOUR_CONNECTED)
    return _split_components(components, params or PostprocessParams())


def _split_components(components: np.ndarray, params: PostprocessParams) -> np.ndarray:
    """:func:`split_touching` given the mask's 4-connected labels (int32, 1..K, no gaps)."""
    boxes = np.array(
        [(b[0].start, b[0].stop, b[1].start, b[1].stop) for b in ndi.find_objects(components)],
        dtype=np.int64,
    ).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(components.shape, dtype=np.int32)
    grouping = _clusters(boxes, params, components.shape)
    if grouping is not None:
        return _split_clusters(components, *grouping, params)
    mask = components > 0
    return relabel_raster_order(_split(mask, params, _component_distances(components), None))


def _clusters(
    boxes: np.ndarray, params: PostprocessParams, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Group objects that can influence each other's markers.

    An object's markers depend on other objects only through the two maximum
    filters, i.e. on objects within ``reach = max(max_filter_size,
    peak_footprint) // 2`` px (Chebyshev). Growing every box (K, 4: r0, r1, c0,
    c1) by ``reach // 2 + 1`` px makes the boxes of any such pair overlap;
    clusters are the connected groups of overlapping grown boxes.

    Returns:
        ``(cluster_of, cluster_boxes)``: int (K + 1,) cluster index per label
        (entry 0, the background, is -1) and int (C, 4) tight boxes of the
        clusters; or None when the full-image path must or should be used.
    """
    height, width = shape
    count = len(boxes)
    # The crops assume the image-wide minimum of Dmax is 0: true when some pixel
    # is > max_filter_size // 2 px from every box, certainly so when the boxes
    # grown by that much cannot cover the image.
    floor_reach = params.max_filter_size // 2 + 1
    # Beyond ~2000 objects the image is dense and the K x K test costs memory.
    if _grown_area(boxes, floor_reach, shape) >= height * width or count > 2000:
        return None
    reach = max(params.max_filter_size, params.peak_footprint) // 2
    grown = _grow_boxes(boxes, reach // 2 + 1, shape)
    overlap = (
        (grown[:, None, 0] < grown[None, :, 1])
        & (grown[None, :, 0] < grown[:, None, 1])
        & (grown[:, None, 2] < grown[None, :, 3])
        & (grown[None, :, 2] < grown[:, None, 3])
    )
    n_clusters, cluster = connected_components(csr_matrix(overlap), directed=False)
    # Measured on one core: a cluster costs ~0.6 ms of fixed overhead (mostly
    # the watershed call) plus ~100 ns per crop pixel, the full-image path
    # ~60 ns per image pixel. Both give the same cells; pick the cheaper.
    if n_clusters * 6e-4 + _grown_area(boxes, 1, shape) * 1e-7 > height * width * 6e-8:
        return None
    tight = np.empty((n_clusters, 4), dtype=np.int64)
    tight[:, [0, 2]] = np.iinfo(np.int64).max
    tight[:, [1, 3]] = 0
    np.minimum.at(tight[:, 0], cluster, boxes[:, 0])
    np.maximum.at(tight[:, 1], cluster, boxes[:, 1])
    np.minimum.at(tight[:, 2], cluster, boxes[:, 2])
    np.maximum.at(tight[:, 3], cluster, boxes[:, 3])
    return np.concatenate([[-1], cluster]), tight


def _grow_boxes(boxes: np.ndarray, margin: int, shape: tuple[int, ...]) -> np.ndarray:
    """Boxes (K, 4: r0, r1, c0, c1) widened by ``margin`` and clipped to ``shape``."""
    low, high = np.zeros(4, np.int64), np.array([shape[0], shape[0], shape[1], shape[1]])
    return np.clip(boxes + np.array([-margin, margin, -margin, margin]), low, high)


def _grown_area(boxes: np.ndarray, margin: int, shape: tuple[int, ...]) -> int:
    grown = _grow_boxes(boxes, margin, shape)
    return int(((grown[:, 1] - grown[:, 0]) * (grown[:, 3] - grown[:, 2])).sum())


def _split_clusters(
    components: np.ndarray,
    cluster_of: np.ndarray,
    cluster_boxes: np.ndarray,
    params: PostprocessParams,
) -> np.ndarray:
    """Watershed labels computed cluster by cluster, numbered in raster order (int32)."""
    width = components.shape[1]
    pieces = []
    values, firsts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    offset = 0
    for index, (r0, r1, c0, c1) in enumerate(cluster_boxes.tolist()):
        # A 1-px margin holds the background ring the distance transform needs;
        # other clusters' objects inside the crop are masked out.
        crop = _grow((slice(r0, r1), slice(c0, c1)), 1, components.shape)
        own = cluster_of[components[crop]] == index
        sub = _split(own, params, ndi.distance_transform_edt(own), floor=0.0)
        found = sub > 0
        pieces.append((crop, found, sub[found] + offset))
        value, first = _first_pixels(sub, (crop[0].start, crop[1].start), width)
        values.append(value + offset)
        firsts.append(first)
        offset += int(sub.max(initial=0))
    # Number the cells by first pixel over the whole image, as relabel_raster_order.
    value_all, first_all = np.concatenate(values), np.concatenate(firsts)
    lut = np.zeros(offset + 1, dtype=np.int32)
    lut[value_all[np.argsort(first_all, kind="stable")]] = np.arange(1, value_all.size + 1)
    labels = np.zeros(components.shape, dtype=np.int32)
    for crop, found, piece in pieces:
        labels[crop][found] = lut[piece]
    return labels


def _split(
    mask: np.ndarray, params: PostprocessParams, distance: np.ndarray, floor: float | None
) -> np.ndarray:
    """Watershed labels (int32, unordered) of a bool mask and its distance transform."""
    markers = find_markers(mask, distance, params, floor=floor)
    labels = watershed(
        -distance,
        markers,
        mask=mask,
        compactness=params.compactness,
        watershed_line=params.watershed_line,
    ).astype(np.int32, copy=False)
    if params.keep_unmarked:
        labels = _label_unmarked(mask, labels, markers)
    return labels


def postprocess(
    prob: np.ndarray, threshold: float | np.floating, params: PostprocessParams | None = None
) -> np.ndarray:
    """Probability map -> labelled cells (docs/method.md#post-processing, counted from labels).

    Args:
        prob: float (H, W) cell probabilities in [0, 1].
        threshold: binarisation threshold (strict ``>``).
        params: constants; the paper's when None.

    Returns:
        int32 (H, W) labels: 0 background, 1..K cells; K = ``labels.max()``.
    """
    params = params or PostprocessParams()
    binary = binarize(prob, threshold)
    del prob  # frees the map from here on when the caller passed a temporary
    components, _ = _clean_components(binary, params)
    del binary
    return _split_components(components, params)


def count_cells(labels: np.ndarray) -> int:
    """Number of cells in a sequential label image from :func:`postprocess`."""
    return int(labels.max(initial=0))

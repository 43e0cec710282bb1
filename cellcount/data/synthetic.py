"""Built-in synthetic FNC-like dataset: fluorescence images with exact cell masks.

The generator imitates the yellow Fluorescent Neuronal Cells (FNC) images: a dark,
slightly red-tinted and unevenly lit background with camera grain; yellow/orange
labelled cells of varying size, shape, brightness and texture, some of them in
touching clumps; and the things a counter must learn to ignore (dim unlabelled
look-alike cells, bright curved filaments, an occasional wide bright strip, faint
neuron processes). Only the labelled cells are in the mask.

Conventions:

* all intensities are drawn on a linear float32 canvas in [0, 1] (1 = 255) and
  quantised to uint8 at the end;
* a cell is a perturbed ellipse with normalised radius ``s`` (``s = 1`` on its
  outline); its brightness profile is exactly half its plateau at ``s = 1`` and its
  mask is ``s <= 1``, so the mask is the half-maximum contour of the drawn cell;
* pixels shared by overlapping cells of a clump go to the cell with the smaller
  ``s``, so every instance keeps its core; in the *binary* mask touching cells merge;
* randomness comes only from the ``numpy.random.Generator`` passed in; on disk,
  image ``i`` uses ``np.random.default_rng([seed, i])``, so it depends on
  ``(seed, i)`` only.

On-disk layout written by :func:`generate_dataset` (the ``folder`` layout of
:mod:`cellcount.data.io`)::

    root/images/synth_0000.png   RGB uint8
    root/masks/synth_0000.png    L uint8, 0 background / 255 cell
    root/counts.csv              name,count (true number of cell instances)
    root/synthetic.json          manifest: version, seed, n_images, config
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from cellcount.data.io import DataError
from cellcount.runtime.files import write_csv

log = logging.getLogger(__name__)

#: Bump whenever the rendering changes, so cached datasets are not silently reused.
GENERATOR_VERSION = 2
MANIFEST_NAME = "synthetic.json"
COUNTS_NAME = "counts.csv"
ARTIFACTS_NAME = "artifacts.csv"
# Artefact regions at least this large (px) are listed for artefact oversampling.
ARTIFACT_MIN_AREA = 400
#: Fast, deterministic PNG encoding (grainy images barely compress better at higher levels).
PNG_OPTIONS: dict[str, Any] = {"format": "PNG", "compress_level": 3}

FloatRange = tuple[float, float]
IntRange = tuple[int, int]


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of one synthetic image. Defaults suit a 512x512 image.

    Intensities are fractions of the 8-bit range (1.0 = 255); sizes are in pixels;
    ``(lo, hi)`` ranges are sampled uniformly per image or per object (integer
    ranges inclusive). Lists are accepted for ranges (e.g. from YAML) and stored as
    tuples.

    Attributes:
        height, width: image size in pixels.
        n_cells: number of labelled cells (instances), clump members included.
            Cells are placed fully inside the image and not on a strip; when no free
            place is found the image gets fewer cells (the labels say how many).
        diameter: cell diameter (mean of the two ellipse axes, before perturbation).
        elongation: ratio of the long to the short ellipse axis.
        irregularity: amplitude of the random outline harmonics (0 = exact ellipse).
        tail_prob: probability that a cell has a pointed, dendrite-like tail.
        cell_brightness: plateau intensity of labelled cells.
        clump_prob: probability that a placed cell grows into a clump of 2-3 touching cells.
        n_dim_cells: number of dim unlabelled look-alike cells.
        dim_brightness: plateau intensity of dim cells (keep it below ``cell_brightness``).
        n_filaments: number of bright thin curved artefacts (not cells).
        filament_brightness: peak intensity of the filaments.
        strip_prob: probability of one wide bright strip (tissue fold / edge).
        strip_width: width of that strip.
        strip_brightness: mean intensity of that strip.
        n_processes: number of faint neuron processes (thin filaments, often from a cell).
        process_brightness: peak intensity of the processes.
        background: mean background level (red channel).
        illumination: relative amplitude of the low-frequency illumination variation.
        read_noise: standard deviation of the additive grain.
        shot_noise: signal-dependent noise; variance = ``shot_noise * intensity``.
    """

    height: int = 512
    width: int = 512
    n_cells: IntRange = (3, 12)
    diameter: FloatRange = (15.0, 45.0)
    elongation: FloatRange = (1.0, 1.8)
    irregularity: float = 0.12
    tail_prob: float = 0.4
    cell_brightness: FloatRange = (0.3, 1.0)
    clump_prob: float = 0.25
    n_dim_cells: IntRange = (2, 8)
    dim_brightness: FloatRange = (0.04, 0.12)
    n_filaments: IntRange = (0, 3)
    filament_brightness: FloatRange = (0.25, 0.9)
    strip_prob: float = 0.15
    strip_width: FloatRange = (12.0, 60.0)
    strip_brightness: FloatRange = (0.2, 0.7)
    n_processes: IntRange = (2, 8)
    process_brightness: FloatRange = (0.03, 0.08)
    background: FloatRange = (0.01, 0.035)
    illumination: float = 0.35
    read_noise: float = 0.006
    shot_noise: float = 0.0015

    def __post_init__(self) -> None:
        for f in fields(self):
            if str(f.type) in ("IntRange", "FloatRange"):
                cast = int if f.type == "IntRange" else float
                object.__setattr__(self, f.name, _as_range(f.name, getattr(self, f.name), cast))
        if self.height < 16 or self.width < 16:
            raise ValueError(f"images must be at least 16x16, got {self.height}x{self.width}")
        for name in ("tail_prob", "clump_prob", "strip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticConfig.{name} must be a probability in [0, 1]")
        if self.diameter[0] <= 0 or self.elongation[0] < 1.0:
            raise ValueError("SyntheticConfig needs diameter > 0 and elongation >= 1")
        if min(self.irregularity, self.illumination, self.read_noise, self.shot_noise) < 0:
            raise ValueError("SyntheticConfig irregularity/illumination/noise must be >= 0")


def _as_range(name: str, value: Any, cast: type) -> tuple[Any, Any]:
    """Check and normalise a ``(lo, hi)`` config value (any 2-item sequence)."""
    try:
        lo, hi = (cast(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"SyntheticConfig.{name} must be a (lo, hi) pair, got {value!r}") from err
    if not 0 <= lo <= hi:
        raise ValueError(f"SyntheticConfig.{name} needs 0 <= lo <= hi, got ({lo}, {hi})")
    return lo, hi


@dataclass(frozen=True)
class Scene:
    """A rendered image with its ground truth and the layers that are *not* cells.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) int32 instance labels; 0 background, 1..K cells (all present).
        dim: (H, W) bool, the cores (``s <= 1``) of dim unlabelled cells.
        artifacts: (H, W) bool, where filaments/strips are at >= 30 % of their peak.
            Artefacts never add mask pixels, but a filament may cross a labelled cell,
            so this layer can overlap ``labels > 0``; ``dim`` never does.
    """

    image: np.ndarray
    labels: np.ndarray
    dim: np.ndarray
    artifacts: np.ndarray


@dataclass(frozen=True)
class _Blob:
    """Geometry of one cell: centre, half-axes, rotation and outline perturbation."""

    cy: float
    cx: float
    a: float  # half-axis along theta (px)
    b: float  # half-axis across theta (px)
    theta: float
    harmonics: np.ndarray  # (n, 3): order k, amplitude, phase
    tail: tuple[float, float, float]  # pointed tail: amplitude (0 = none), angle, angular width

    @property
    def body(self) -> float:
        """Radius (px) that contains the body, tail excluded."""
        return max(self.a, self.b) * (1.0 + float(np.abs(self.harmonics[:, 1]).sum()))

    @property
    def extent(self) -> float:
        """Radius (px) that contains the whole outline, tail included."""
        return self.body + max(self.a, self.b) * self.tail[0]


@dataclass
class _Canvas:
    """Float layers an image is drawn into (all (H, W) or (H, W, 3) float32/int32/bool)."""

    signal: np.ndarray  # additive light: background, strip, curves
    cells: np.ndarray  # cell light, combined by maximum
    best: np.ndarray  # smallest normalised radius of a labelled cell per pixel
    labels: np.ndarray
    dim: np.ndarray
    artifacts: np.ndarray
    blocked: np.ndarray  # where labelled and dim cells may not go (the strip)

    @classmethod
    def empty(cls, height: int, width: int) -> _Canvas:
        shape = (height, width)
        return cls(
            signal=np.zeros((*shape, 3), np.float32),
            cells=np.zeros((*shape, 3), np.float32),
            best=np.full(shape, np.inf, np.float32),
            labels=np.zeros(shape, np.int32),
            dim=np.zeros(shape, bool),
            artifacts=np.zeros(shape, bool),
            blocked=np.zeros(shape, bool),
        )


# -- small helpers --------------------------------------------------------------------


def _uniform(rng: np.random.Generator, bounds: FloatRange) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _integer(rng: np.random.Generator, bounds: IntRange) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic Hermite ramp of ``t`` clipped to [0, 1] (0 -> 0, 0.5 -> 0.5, 1 -> 1)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth random field (H, W) float32, zero mean and unit std, features ~``scale`` px.

    A coarse grid of Gaussian values is upsampled bicubically (fast at any size).
    """
    height, width = shape
    grid = (max(2, int(np.ceil(height / scale)) + 1), max(2, int(np.ceil(width / scale)) + 1))
    coarse = rng.standard_normal(grid).astype(np.float32)
    out = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    return (out - out.mean()) / (out.std() + 1e-6)


def _grain(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-std noise with a ~1 px correlation (demosaicing look), float32."""
    z = rng.standard_normal(shape, dtype=np.float32)
    for axis in (0, 1):
        z = _binomial(z, axis)
    return z / np.float32(0.375)  # std of white noise after [1,2,1]/4 twice


def _binomial(a: np.ndarray, axis: int) -> np.ndarray:
    """[1, 2, 1] / 4 filter along ``axis`` (edges reuse the border value)."""
    out = 2.0 * a
    head = [slice(None)] * a.ndim
    tail = [slice(None)] * a.ndim
    head[axis], tail[axis] = slice(1, None), slice(None, -1)
    out[tuple(head)] += a[tuple(tail)]
    out[tuple(tail)] += a[tuple(head)]
    edge_lo, edge_hi = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    edge_lo[axis], edge_hi[axis] = slice(0, 1), slice(-1, None)
    out[tuple(edge_lo)] += a[tuple(edge_lo)]
    out[tuple(edge_hi)] += a[tuple(edge_hi)]
    return out * np.float32(0.25)


def _smooth_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Smooth random sequence (n,) float64 with unit std and correlation ~``sigma`` samples."""
    wave = ndi.gaussian_filter1d(rng.standard_normal(n), sigma, mode="wrap")
    return wave * np.sqrt(2 * np.sqrt(np.pi) * sigma)


def _window(cy: float, cx: float, reach: float, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Slices of the square of half-size ``reach`` around (cy, cx), clipped to ``shape``."""
    y0, y1 = max(0, int(cy - reach)), min(shape[0], int(np.ceil(cy + reach)) + 1)
    x0, x1 = max(0, int(cx - reach)), min(shape[1], int(np.ceil(cx + reach)) + 1)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _colour(rng: np.random.Generator, green: FloatRange, blue: FloatRange) -> np.ndarray:
    """RGB weights (3,) float32 with red = 1 (yellow to orange fluorescence)."""
    return np.array([1.0, _uniform(rng, green), _uniform(rng, blue)], np.float32)


# -- background and strip ---------------------------------------------------------------


def _draw_background(canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    """Dark red-tinted background with uneven illumination and tissue mottling."""
    shape = (cfg.height, cfg.width)
    level = _uniform(rng, cfg.background)
    light = 1.0 + cfg.illumination * _smooth_field(rng, shape, max(shape) / 2.5)
    mottle = 1.0 + 0.2 * _smooth_field(rng, shape, rng.uniform(15.0, 40.0))
    mottle += 0.15 * _smooth_field(rng, shape, 5.0)
    base = level * np.clip(light, 0.15, None) * np.clip(mottle, 0.1, None)
    tint = _colour(rng, (0.25, 0.45), (0.0, 0.06))
    canvas.signal += base[..., None] * tint


def _draw_strip(canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    """A wide, gently curved bright band with granular texture (not a cell)."""
    height, width = cfg.height, cfg.width
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    angle = rng.uniform(0, np.pi)
    half = _uniform(rng, cfg.strip_width) / 2.0
    bend = rng.uniform(-1.0, 1.0) / max(height, width)
    soft = rng.uniform(3.0, 12.0)
    yy, xx = np.ogrid[0:height, 0:width]
    dy, dx = (yy - cy).astype(np.float32), (xx - cx).astype(np.float32)
    along = dx * np.float32(np.cos(angle)) + dy * np.float32(np.sin(angle))
    across = dy * np.float32(np.cos(angle)) - dx * np.float32(np.sin(angle))
    span = float(np.hypot(height, width))
    knots = np.linspace(-span, span, 64)
    wobble = 1.0 + 0.25 * _smooth_1d(rng, knots.size, 4.0)
    half_at = half * np.interp(along, knots, wobble).astype(np.float32)
    profile = _smoothstep((half_at - np.abs(across - bend * along * along)) / (2 * soft) + 0.5)
    rows, cols = np.nonzero(profile.any(axis=1))[0], np.nonzero(profile.any(axis=0))[0]
    if rows.size == 0:
        return
    win = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    local = profile[win]
    texture = (
        1.0
        + 0.3 * _smooth_field(rng, local.shape, max(local.shape) / 3.0)
        + 0.25 * _smooth_field(rng, local.shape, 8.0)
        + 0.15 * _smooth_field(rng, local.shape, 2.5)
    )
    light = _uniform(rng, cfg.strip_brightness) * local * np.clip(texture, 0.1, None)
    canvas.signal[win] += light[..., None] * _colour(rng, (0.6, 0.85), (0.0, 0.06))
    canvas.artifacts[win] |= local >= 0.3
    canvas.blocked[win] |= local > 0.0


# -- cells ------------------------------------------------------------------------------


def _random_blob(
    rng: np.random.Generator, cfg: SyntheticConfig, cy: float, cx: float, diameter: float
) -> _Blob:
    """Cell geometry: an ellipse of the given mean diameter, rotated and perturbed."""
    ratio = _uniform(rng, cfg.elongation)
    b = diameter / (1.0 + ratio)  # half-axes a = ratio * b, (a + b) = diameter
    orders = np.arange(2, 6, dtype=np.float64)
    amps = cfg.irregularity * rng.uniform(0.0, 1.0, orders.size) * 2.0 / orders
    phases = rng.uniform(0.0, 2 * np.pi, orders.size)
    tail = (0.0, 0.0, 1.0)
    if rng.random() < cfg.tail_prob:
        tail = (rng.uniform(0.3, 0.9), rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.45))
    return _Blob(
        cy, cx, ratio * b, b, rng.uniform(0, np.pi), np.stack([orders, amps, phases], 1), tail
    )


def _blob_radius(blob: _Blob, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius ``s`` (1 on the outline) and angle over ``win``, both float32."""
    yy, xx = np.ogrid[win[0].start : win[0].stop, win[1].start : win[1].stop]
    dy, dx = (yy - blob.cy).astype(np.float32), (xx - blob.cx).astype(np.float32)
    cos, sin = np.float32(np.cos(blob.theta)), np.float32(np.sin(blob.theta))
    u = (dx * cos + dy * sin) / np.float32(blob.a)
    v = (dy * cos - dx * sin) / np.float32(blob.b)
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    outline = np.ones_like(phi)
    for k, amp, phase in blob.harmonics:
        outline += np.float32(amp) * np.cos(np.float32(k) * phi + np.float32(phase))
    if blob.tail[0] > 0:
        gap = (phi - np.float32(blob.tail[1] - np.pi)) % np.float32(2 * np.pi) - np.float32(np.pi)
        outline += np.float32(blob.tail[0]) * np.exp(-0.5 * (gap / np.float32(blob.tail[2])) ** 2)
    return rho / outline, phi


def _cell_light(
    rng: np.random.Generator, blob: _Blob, s: np.ndarray, phi: np.ndarray, edge_px: float
) -> np.ndarray:
    """Intensity (relative to the plateau) of one cell over its window, float32.

    Half-maximum exactly at ``s = 1`` (smooth ramp of half-width ``edge_px``), brighter
    core, granular texture, optional darker nucleus, and a faint halo outside.
    """
    delta = edge_px / (0.5 * (blob.a + blob.b))
    ramp = _smoothstep((1.0 + delta - s) / (2 * delta))
    inner = np.minimum(s, 1.0)
    core = 1.0 - rng.uniform(0.25, 0.6) * inner**2
    side = 1.0 + rng.uniform(0.0, 0.35) * inner * np.cos(phi - rng.uniform(0, 2 * np.pi))
    sigma = rng.uniform(1.0, 2.0)
    speckle = ndi.gaussian_filter(rng.standard_normal(s.shape).astype(np.float32), sigma)
    grain = speckle * np.float32(2 * np.sqrt(np.pi) * sigma * rng.uniform(0.05, 0.22))
    light = ramp * core * side * np.clip(1.0 + grain, 0.2, 2.0)
    if rng.random() < 0.4:  # nucleus: darker spot off the centre
        r, ang = rng.uniform(0.0, 0.4), rng.uniform(0, 2 * np.pi)
        dist2 = s**2 + r**2 - 2 * s * r * np.cos(phi - ang)
        light *= 1.0 - rng.uniform(0.2, 0.5) * np.exp(-dist2 / (2 * 0.3**2))
    halo = rng.uniform(0.02, 0.08) * _smoothstep((1.6 - s) / 0.6) ** 2
    return (np.maximum(light, halo * (s > 1.0))).astype(np.float32)


def _draw_cell(
    canvas: _Canvas,
    rng: np.random.Generator,
    blob: _Blob,
    brightness: float,
    edge_px: float,
    label: int,
) -> None:
    """Draw one cell; ``label > 0`` labels it, ``label == 0`` marks it as a dim look-alike."""
    delta = edge_px / (0.5 * (blob.a + blob.b))  # ramp half-width in units of s
    reach = (1.0 + max(0.6, delta)) * blob.extent + 2.0  # halo ends at s = 1.6
    win = _window(blob.cy, blob.cx, reach, canvas.best.shape)
    s, phi = _blob_radius(blob, win)
    colour = _colour(rng, (0.65, 0.88), (0.02, 0.08)) * np.float32(brightness)
    light = _cell_light(rng, blob, s, phi, edge_px)
    np.maximum(canvas.cells[win], light[..., None] * colour, out=canvas.cells[win])
    inside = s <= 1.0
    if label > 0:
        mine = inside & (s < canvas.best[win])
        canvas.best[win][mine] = s[mine]
        canvas.labels[win][mine] = label
    else:
        canvas.dim[win] |= inside


def _fits(blob: _Blob, cfg: SyntheticConfig, canvas: _Canvas) -> bool:
    """Whether the whole outline is inside the image and its box is off any strip."""
    r = blob.extent
    inside = r <= blob.cy <= cfg.height - 1 - r and r <= blob.cx <= cfg.width - 1 - r
    return inside and not canvas.blocked[_window(blob.cy, blob.cx, r, canvas.blocked.shape)].any()


def _apart(blob: _Blob, others: list[_Blob], gap: float) -> bool:
    """Whether ``blob`` keeps ``gap`` px from the others (bounding circles, tails included)."""
    return all(
        np.hypot(blob.cy - o.cy, blob.cx - o.cx) > blob.extent + o.extent + gap for o in others
    )


def _grow_clump(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    canvas: _Canvas,
    seed: _Blob,
    placed: list[_Blob],
    room: int,
) -> list[_Blob]:
    """Up to ``room`` (at most 2) cells overlapping ``seed`` or each other: a touching clump."""
    clump = [seed]
    for _ in range(min(room, int(rng.integers(1, 3)))):
        parent = clump[int(rng.integers(len(clump)))]
        diameter = _uniform(rng, cfg.diameter)
        angle = rng.uniform(0, 2 * np.pi)
        dist = (parent.body + diameter / 2) * rng.uniform(0.55, 0.8)
        blob = _random_blob(
            rng, cfg, parent.cy + dist * np.sin(angle), parent.cx + dist * np.cos(angle), diameter
        )
        siblings = [c for c in clump if c is not parent]
        if (
            _fits(blob, cfg, canvas)
            and _apart(blob, placed, 3.0)
            and all(
                np.hypot(blob.cy - c.cy, blob.cx - c.cx) > 0.8 * (blob.body + c.body)
                for c in siblings
            )
        ):
            clump.append(blob)
    return clump[1:]


def _place_cells(rng: np.random.Generator, cfg: SyntheticConfig, canvas: _Canvas) -> list[_Blob]:
    """Non-overlapping labelled cells (clump members overlap only their clump)."""
    wanted = _integer(rng, cfg.n_cells)
    placed: list[_Blob] = []
    for _ in range(30 * wanted + 30):
        if len(placed) >= wanted:
            break
        diameter = _uniform(rng, cfg.diameter)
        blob = _random_blob(
            rng, cfg, rng.uniform(0, cfg.height), rng.uniform(0, cfg.width), diameter
        )
        if not (_fits(blob, cfg, canvas) and _apart(blob, placed, 4.0)):
            continue
        others = list(placed)
        placed.append(blob)
        if rng.random() < cfg.clump_prob and len(placed) < wanted:
            placed += _grow_clump(rng, cfg, canvas, blob, others, wanted - len(placed))
    return placed


def _draw_cells(canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig) -> list[_Blob]:
    """Place and draw the labelled cells; label ``i + 1`` for the i-th placed cell."""
    blobs = _place_cells(rng, cfg, canvas)
    for label, blob in enumerate(blobs, start=1):
        brightness = _uniform(rng, cfg.cell_brightness)
        _draw_cell(canvas, rng, blob, brightness, rng.uniform(1.5, 4.0), label)
    return blobs


def _draw_dim_cells(
    canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig, cells: list[_Blob]
) -> None:
    """Faint, blurrier unlabelled cells, kept off the labelled cells and the strip."""
    wanted, drawn = _integer(rng, cfg.n_dim_cells), 0
    for _ in range(10 * wanted + 10):
        if drawn >= wanted:
            break
        blob = _random_blob(
            rng,
            cfg,
            rng.uniform(0, cfg.height),
            rng.uniform(0, cfg.width),
            _uniform(rng, cfg.diameter),
        )
        box = _window(blob.cy, blob.cx, blob.extent, canvas.blocked.shape)
        if _apart(blob, cells, 6.0) and not canvas.blocked[box].any():
            brightness = _uniform(rng, cfg.dim_brightness)
            _draw_cell(canvas, rng, blob, brightness, rng.uniform(2.0, 4.0), 0)
            drawn += 1


# -- curves: filaments and processes ----------------------------------------------------


def _random_curve(
    rng: np.random.Generator, start: tuple[float, float], length: float, curl: float
) -> np.ndarray:
    """Points (N, 2) float64 (y, x) every 0.5 px along a smoothly turning path."""
    n = max(4, int(length / 0.5))
    wander = _smooth_1d(rng, n, max(1.0, n / 6.0)) + 0.15 * _smooth_1d(rng, n, 6.0)
    heading = rng.uniform(0, 2 * np.pi) + curl * wander
    steps = 0.5 * np.stack([np.sin(heading), np.cos(heading)], 1)
    return np.asarray(start, np.float64) + np.cumsum(steps, axis=0)


def _draw_curve(
    canvas: _Canvas,
    rng: np.random.Generator,
    points: np.ndarray,
    width: float,
    brightness: float,
    colour: np.ndarray,
    artifact: bool,
) -> None:
    """Splat ``points`` bilinearly and blur them into a line of Gaussian profile ``width``.

    Brightness varies along the line (beaded, sometimes broken); the peak is about
    ``brightness``. ``artifact`` marks the line's bright part in ``canvas.artifacts``.
    """
    pad = 4 * width + 2
    shape = canvas.labels.shape
    y0, x0 = max(0, int(points[:, 0].min() - pad)), max(0, int(points[:, 1].min() - pad))
    y1 = min(shape[0], int(points[:, 0].max() + pad) + 1)
    x1 = min(shape[1], int(points[:, 1].max() + pad) + 1)
    if y1 - y0 < 2 or x1 - x0 < 2:
        return
    beads = 0.8 + 0.7 * _smooth_1d(rng, len(points), 30.0) + 0.4 * _smooth_1d(rng, len(points), 4.0)
    beads = np.clip(beads, 0.0, 2.0) * (0.5 * np.sqrt(2 * np.pi) * width * brightness)
    local = np.zeros((y1 - y0, x1 - x0), np.float64)
    py, px = points[:, 0] - y0, points[:, 1] - x0
    iy, ix = np.floor(py).astype(np.int64), np.floor(px).astype(np.int64)
    fy, fx = py - iy, px - ix
    corners = ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)))
    for oy, ox, w in (*corners, (1, 1, fy * fx)):
        ty, tx = iy + oy, ix + ox
        ok = (ty >= 0) & (ty < local.shape[0]) & (tx >= 0) & (tx < local.shape[1])
        flat = ty[ok] * local.shape[1] + tx[ok]
        local += np.bincount(flat, (w * beads)[ok], minlength=local.size).reshape(local.shape)
    light = ndi.gaussian_filter(local, width).astype(np.float32)
    canvas.signal[y0:y1, x0:x1] += light[..., None] * colour
    if artifact:
        canvas.artifacts[y0:y1, x0:x1] |= light >= 0.3 * brightness


def _draw_filaments(canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    """Bright, thin, curved, fragmented orange artefacts (not cells)."""
    size = max(cfg.height, cfg.width)
    for _ in range(_integer(rng, cfg.n_filaments)):
        start = (rng.uniform(0, cfg.height), rng.uniform(0, cfg.width))
        points = _random_curve(rng, start, rng.uniform(0.04, 0.25) * size, rng.uniform(0.5, 1.5))
        colour = _colour(rng, (0.45, 0.75), (0.0, 0.05))
        width, peak = rng.uniform(0.8, 2.0), _uniform(rng, cfg.filament_brightness)
        _draw_curve(canvas, rng, points, width, peak, colour, True)


def _draw_processes(
    canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig, cells: list[_Blob]
) -> None:
    """Faint thin neurites, most starting at the rim of a labelled cell."""
    size = max(cfg.height, cfg.width)
    for _ in range(_integer(rng, cfg.n_processes)):
        if cells and rng.random() < 0.7:
            cell = cells[int(rng.integers(len(cells)))]
            angle = rng.uniform(0, 2 * np.pi)
            reach = 0.8 * cell.body
            start = (cell.cy + reach * np.sin(angle), cell.cx + reach * np.cos(angle))
        else:
            start = (rng.uniform(0, cfg.height), rng.uniform(0, cfg.width))
        points = _random_curve(rng, start, rng.uniform(0.08, 0.35) * size, rng.uniform(0.2, 0.8))
        colour = _colour(rng, (0.6, 0.85), (0.02, 0.08))
        width, peak = rng.uniform(0.6, 1.2), _uniform(rng, cfg.process_brightness)
        _draw_curve(canvas, rng, points, width, peak, colour, False)


# -- finishing ----------------------------------------------------------------------------


def _expose(canvas: _Canvas, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Combine the layers, add camera noise, quantise: (H, W, 3) uint8."""
    light = canvas.signal
    light += canvas.cells
    # shared-luminance grain (shot + most of the read noise), ~1 px correlated
    noise = np.maximum(light, 0.0)
    noise *= np.float32(cfg.shot_noise)
    np.sqrt(noise, out=noise)
    noise += np.float32(0.8 * cfg.read_noise)
    noise *= _grain(rng, light.shape[:2])[..., None]
    light += noise
    # independent per-channel (chroma) grain
    chroma = rng.standard_normal(light.shape, dtype=np.float32)
    chroma *= np.float32(0.6 * cfg.read_noise)
    light += chroma
    light[:, ::2] += np.float32(0.4 * cfg.read_noise)  # faint column pattern of the sensor
    light *= np.float32(255.0)
    light += np.float32(0.5)
    np.clip(light, 0, 255, out=light)
    return light.astype(np.uint8)


def _compact_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 1..K with no gaps (a cell can lose all its pixels in a clump)."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[labels]


def render_scene(rng: np.random.Generator, cfg: SyntheticConfig | None = None) -> Scene:
    """Render one synthetic image with its labels and its non-cell layers.

    Args:
        rng: the only source of randomness (same state -> identical output).
        cfg: image parameters (default :class:`SyntheticConfig`).

    Returns:
        a :class:`Scene`: image (H, W, 3) uint8, labels (H, W) int32 in 0..K,
        dim and artifacts (H, W) bool.
    """
    cfg = cfg or SyntheticConfig()
    canvas = _Canvas.empty(cfg.height, cfg.width)
    _draw_background(canvas, rng, cfg)
    if rng.random() < cfg.strip_prob:
        _draw_strip(canvas, rng, cfg)
    cells = _draw_cells(canvas, rng, cfg)
    _draw_dim_cells(canvas, rng, cfg, cells)
    _draw_filaments(canvas, rng, cfg)
    _draw_processes(canvas, rng, cfg, cells)
    image = _expose(canvas, rng, cfg)
    return Scene(image, _compact_labels(canvas.labels), canvas.dim, canvas.artifacts)


# -- dataset on disk ---------------------------------------------------------------------


def sample_name(index: int) -> str:
    """File stem of image ``index``: ``synth_0000``, ``synth_0001``, ..."""
    return f"synth_{index:04d}"


def _manifest(n_images: int, seed: int, cfg: SyntheticConfig) -> dict[str, Any]:
    """JSON-normalised description of a dataset (tuples become lists)."""
    data = {
        "generator": "cellcount.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_images": n_images,
        "config": asdict(cfg),
    }
    return dict(json.loads(json.dumps(data)))


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(root: Path, n_images: int) -> bool:
    names = [sample_name(i) + ".png" for i in range(n_images)]
    return (root / COUNTS_NAME).is_file() and all(
        (root / sub / name).is_file() for sub in ("images", "masks") for name in names
    )


def _check_existing(root: Path, wanted: dict[str, Any]) -> bool:
    """True if ``root`` already holds the wanted dataset; False if it is absent or empty.

    Raises:
        DataError: ``root`` holds something else (another dataset, other files).
    """
    if not root.exists():
        return False
    if not root.is_dir():
        raise DataError(f"synthetic data root {root} is not a folder; choose another path.")
    found = _read_manifest(root)
    if found is None:
        if any(root.iterdir()):
            raise DataError(
                f"synthetic data root {root} already exists and is not a synthetic dataset "
                f"(no readable {MANIFEST_NAME}); choose an empty or new folder."
            )
        return False
    if found != wanted:
        differ = sorted(k for k in wanted if found.get(k) != wanted[k])
        raise DataError(
            f"synthetic data root {root} holds a dataset made with other parameters "
            f"(differs in: {', '.join(differ) or 'manifest keys'}); delete the folder or "
            f"choose another root to generate the requested one."
        )
    if not _is_complete(root, wanted["n_images"]):
        raise DataError(
            f"synthetic data root {root} has a manifest but misses files; delete the folder "
            f"to regenerate it."
        )
    return True


BOX_COLUMNS = ("image", "y", "x", "height", "width")


def artifact_region_boxes(artifacts: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes ``(y, x, height, width)`` of artefact regions of at least
    ``ARTIFACT_MIN_AREA`` pixels (8-connected), for artefact oversampling."""
    labels, _ = ndi.label(artifacts, structure=np.ones((3, 3)))
    areas = np.bincount(labels.ravel())
    boxes = []
    for index, window in enumerate(ndi.find_objects(labels), start=1):
        if window is not None and areas[index] >= ARTIFACT_MIN_AREA:
            rows, cols = window
            boxes.append((rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start))
    return boxes


def _write_dataset(folder: Path, n_images: int, seed: int, cfg: SyntheticConfig) -> None:
    """Write every file of the dataset into ``folder`` (manifest last)."""
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    rows = []
    boxes: list[dict[str, int | str]] = []
    for index in range(n_images):
        scene = render_scene(np.random.default_rng([seed, index]), cfg)
        name = sample_name(index)
        Image.fromarray(scene.image).save(folder / "images" / f"{name}.png", **PNG_OPTIONS)
        mask = np.where(scene.labels > 0, 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png", **PNG_OPTIONS)
        rows.append({"name": name, "count": int(scene.labels.max())})
        boxes += [dict(zip(BOX_COLUMNS, (name, *box), strict=True))
                  for box in artifact_region_boxes(scene.artifacts)]  # fmt: skip
    write_csv(folder / COUNTS_NAME, rows, ("name", "count"))
    write_csv(folder / ARTIFACTS_NAME, boxes, BOX_COLUMNS)
    manifest = _manifest(n_images, seed, cfg)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def generate_dataset(
    root: Path | str, n_images: int, seed: int = 0, cfg: SyntheticConfig | None = None
) -> Path:
    """Write a synthetic dataset into ``root`` unless it is already there.

    Image ``i`` is rendered from ``np.random.default_rng([seed, i])``: the same
    ``(seed, i, cfg)`` gives byte-identical files, and a larger ``n_images`` keeps the
    first images unchanged. Files are written into a hidden temporary sibling folder
    that is renamed to ``root`` at the end, so an interrupted run leaves no partial
    dataset behind.

    Args:
        root: dataset folder to create (its parent is created if needed). It may
            exist if it is empty, or if it holds exactly this dataset (then nothing
            is written: the call is cheap and idempotent).
        n_images: number of images (>= 1).
        seed: dataset seed.
        cfg: image parameters (default :class:`SyntheticConfig`).

    Returns:
        ``root`` as a Path.

    Raises:
        DataError: ``root`` holds something else (other files or another dataset).
    """
    root = Path(root)
    cfg = cfg or SyntheticConfig()
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    wanted = _manifest(n_images, seed, cfg)
    if _check_existing(root, wanted):
        log.info("synthetic dataset %s is up to date (%d images, seed %d)", root, n_images, seed)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        log.info("generating %d synthetic images (seed %d) into %s", n_images, seed, root)
        _write_dataset(tmp, n_images, seed, cfg)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _check_existing(root, wanted):  # another process finished it first
            return root
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root

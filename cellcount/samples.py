"""Small real sample images with ground truth, shipped inside the package.

    >>> from cellcount import samples
    >>> samples.names()
    ['dsb2018', 'fnc_red', 'fnc_yellow']
    >>> samples.path("fnc_yellow")          # folder with images/ and masks/
    >>> samples.images("dsb2018")           # the image files, sorted

Each set is a folder ``images/`` plus ``masks/`` (binary, 0/255) or ``labels/``
(uint16 instance labels) with the same file names. Licences and citations are in
``cellcount/resources/samples/README.md`` (``cellcount samples --licence``). From
the shell: ``cellcount samples`` lists them, ``cellcount samples NAME`` prints the
set's folder and ``--images`` its images folder, e.g.
``cellcount count "$(cellcount samples fnc_yellow --images)"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class SampleSet:
    """A shipped sample set.

    Attributes:
        name: key for :func:`path`.
        description: one line for listings.
        truth: ``masks`` (binary, connected components are cells) or ``labels``
            (instance labels, touching cells kept apart).
        cell_diameter: typical cell diameter in px when the set has one (None: it
            varies from image to image).
        match_radius: the paper's centroid matching radius for it in px (None: 1.25
            times each image's median cell diameter).
        licence: licence of the images and annotations.
    """

    name: str
    description: str
    truth: str
    cell_diameter: float | None
    match_radius: float | None
    licence: str


SETS: dict[str, SampleSet] = {
    s.name: s
    for s in (
        SampleSet("fnc_yellow", "4 FNC v1 yellow neurons, mouse brain slices, 1600x1200 RGB",
                  "masks", 40.0, 50.0, "CC BY-SA 4.0"),
        SampleSet("fnc_red", "2 FNC v2 red neurons, mouse brain slices, 1600x1200 RGB",
                  "masks", 40.0, 50.0, "CC BY-SA 4.0"),
        SampleSet("dsb2018", "12 DSB 2018 fluorescence nuclei, 4 sources, 8-bit grey",
                  "labels", None, None, "CC0 1.0"),
    )
}  # fmt: skip


def names() -> list[str]:
    """Names of the shipped sample sets, sorted."""
    return sorted(SETS)


def _root() -> Path:
    return Path(str(resources.files("cellcount") / "resources" / "samples"))


def get(name: str) -> SampleSet:
    """The :class:`SampleSet` called ``name``.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    if name not in SETS:
        raise KeyError(f"unknown sample set {name!r}; available: {', '.join(names())}")
    return SETS[name]


def path(name: str) -> Path:
    """Folder of a sample set (``images/`` plus ``masks/`` or ``labels/``).

    Raises:
        KeyError: unknown name.
        FileNotFoundError: the install lacks the files (reinstall the package).
    """
    folder = _root() / get(name).name
    if not (folder / "images").is_dir():
        raise FileNotFoundError(
            f"sample set {name!r} is missing from this install ({folder}); "
            f"reinstall cellcount (pip install --force-reinstall cellcount)."
        )
    return folder


def images(name: str) -> list[Path]:
    """The image files of a sample set, sorted by name."""
    return sorted((path(name) / "images").glob("*.png"))


def truth_path(name: str, image: Path) -> Path:
    """The ground-truth file (mask or label image) of one of the set's images."""
    return path(name) / get(name).truth / image.name


def licence_text() -> str:
    """The samples' README: sources, licences and how to cite them."""
    return (_root() / "README.md").read_text(encoding="utf-8")

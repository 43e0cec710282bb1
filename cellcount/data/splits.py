"""Train / validation / test splits by image (never by crop).

A split is made once, written to the run folder as ``split.json`` and read back on
resume, so a run can be reproduced exactly. The test set is either given (a file
of names, e.g. the paper's 70 FNC test images, or the FNC v2 ``test`` folder) or
drawn at random; train/val is a seeded random split of the rest (the authors'
lexicographic "first 30 %" split is a known leak, see docs/method.md#data-and-crops).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from cellcount.data.io import DataError, Sample
from cellcount.runtime.files import atomic_write_text


@dataclass(frozen=True)
class Split:
    """Image names of each part of a split; the three lists are disjoint and sorted."""

    train: list[str]
    val: list[str]
    test: list[str]

    def save(self, path: Path) -> None:
        """Write the split as JSON (atomically)."""
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Split:
        """Read a split written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(train=data["train"], val=data["val"], test=data["test"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(
                f"split file {path} is unreadable ({err}); restore it, or use a new run "
                f"folder for a new split"
            ) from err


def read_name_list(path: Path | str) -> list[str]:
    """Read one image name per line (file names or stems; blank lines and # comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise DataError(f"cannot read name list {path}: {err}") from err
    return [Path(line.strip()).stem for line in lines if line.strip() and not line.startswith("#")]


def make_split(
    samples: list[Sample],
    val_fraction: float = 0.3,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_names: list[str] | None = None,
) -> Split:
    """Split samples by image.

    Args:
        samples: the dataset's samples.
        val_fraction: share of the non-test images used for validation, in [0, 1).
        test_fraction: share of all images drawn for test when no fixed test set exists.
        seed: seed of the random draws.
        test_names: fixed test images (stems); overrides ``test_fraction``. Samples whose
            ``group`` is "test" (FNC v2) are test images too.

    Returns:
        The split; at least one training image is guaranteed.
    """
    names = sorted(s.name for s in samples)
    fixed = set(test_names or []) | {s.name for s in samples if s.group == "test"}
    missing = sorted(set(test_names or []) - set(names))
    if test_names and len(missing) == len(set(test_names)):
        raise DataError(
            f"none of the {len(set(test_names))} listed test images is in the dataset "
            f"(e.g. {missing[:3]}); check data.test_names_file."
        )
    rng = random.Random(seed)
    if fixed:
        test = sorted(fixed & set(names))
    else:
        test = sorted(rng.sample(names, round(test_fraction * len(names))))
    rest = [n for n in names if n not in set(test)]
    val = sorted(rng.sample(rest, round(val_fraction * len(rest))))
    train = sorted(set(rest) - set(val))
    if not train:
        raise DataError(
            f"no training images left from {len(names)} images (test {len(test)}, val "
            f"{len(val)}); add images or lower data.val_fraction / data.test_fraction."
        )
    return Split(train=train, val=val, test=test)

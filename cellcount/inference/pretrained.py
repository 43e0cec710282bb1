"""Pretrained models shipped inside the package (no download): names -> files.

``cellcount count --model pretrained`` and ``Counter.from_checkpoint("pretrained")``
resolve a name listed in :data:`PRETRAINED` to its file in
``cellcount/resources/models``; anything else is taken as a checkpoint path.
The shipped files are ordinary cellcount checkpoints with float16 weights
(half the size; loading casts them back to float32).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# name -> (file in resources/models, one-line description)
PRETRAINED: dict[str, tuple[str, str]] = {
    "pretrained": (
        "c_resunet_fluo.ckpt",
        "c-ResUnet for fluorescent cells and nuclei (synthetic FNC-like + DSB 2018 nuclei)",
    ),
}


def pretrained_path(name: str) -> Path:
    """File of a shipped model.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        FileNotFoundError: the install lacks the file (reinstall the package).
    """
    if name not in PRETRAINED:
        raise KeyError(f"unknown pretrained model {name!r}; available: {', '.join(PRETRAINED)}")
    path = Path(str(resources.files("cellcount") / "resources" / "models" / PRETRAINED[name][0]))
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained model {name!r} is missing from this install ({path}); "
            f"reinstall cellcount (pip install --force-reinstall cellcount)."
        )
    return path


def resolve_model(name_or_path: str | Path) -> Path:
    """A pretrained model's file for a known name, else the given checkpoint path."""
    if isinstance(name_or_path, str) and name_or_path in PRETRAINED:
        return pretrained_path(name_or_path)
    path = Path(name_or_path)
    if path.suffix.lower() == ".zip" and path.is_file():  # a bioimage.io package
        return _package_checkpoint(path)
    if not path.exists() and not path.suffix and path.parent == Path("."):  # a mistyped name
        raise FileNotFoundError(f"{name_or_path} is neither a checkpoint file nor a shipped "
                                f"model name ({', '.join(PRETRAINED)})")  # fmt: skip
    return path


def _package_checkpoint(package: Path) -> Path:
    """The cellcount checkpoint attached to a bioimage.io package, extracted once into a
    cache folder named by the package's hash."""
    import tempfile

    from cellcount.inference.bioimageio import checkpoint_from_package
    from cellcount.runtime.files import file_sha256

    folder = Path(tempfile.gettempdir()) / "cellcount_packages" / file_sha256(package)[:16]
    target = folder / f"{package.stem}.ckpt"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint_from_package(package, folder)
    return target

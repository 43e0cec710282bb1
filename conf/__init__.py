# Makes conf/ the package `cellcount.conf` inside the wheel (pyproject.toml
# package-dir), so Hydra finds the configs as pkg://cellcount.conf from any folder.

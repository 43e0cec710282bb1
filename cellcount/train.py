"""``python -m cellcount.train [overrides]``: see :mod:`cellcount.training.train`."""

from cellcount.training.train import main

if __name__ == "__main__":
    main()

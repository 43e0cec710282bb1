"""``python -m cellcount.evaluate ckpt=PATH [overrides]``: see
:mod:`cellcount.training.evaluate`."""

from cellcount.training.evaluate import main

if __name__ == "__main__":
    main()

"""Training stage: the LightningModule, the weighted loss, callbacks, and the Hydra
entry points ``python -m cellcount.train`` and ``python -m cellcount.evaluate``."""

"""Evaluation stage, pure NumPy/SciPy: post-processing, matching, metrics, threshold
selection, overlays, the classical baseline and the Table 1 report."""

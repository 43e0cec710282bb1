"""Inference stage: tiled prediction, checkpoint I/O, shipped models, export and
import of the authors' weights."""

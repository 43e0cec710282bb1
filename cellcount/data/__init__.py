"""Data side of cellcount: file reading, synthetic data, crops, weight maps, datasets."""

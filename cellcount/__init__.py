"""cellcount: count cells in fluorescence microscopy images with c-ResUnet.

Reimplementation of Morelli, Clissa et al., "Automating cell counting in
fluorescent microscopy through deep learning with c-ResUnet", Sci Rep 2021.
Importing the package is light: submodules load torch and friends on demand.
"""

__version__ = "0.1.0"

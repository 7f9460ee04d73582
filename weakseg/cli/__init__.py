"""The ``weakseg`` command line: thin wrappers over the Python API, one module per command.

Command modules import heavy libraries (torch, timm, openslide, h5py, pandas, scikit-image, …) and the
weakseg modules that use them only inside their command functions, so ``weakseg --help`` starts in a
blink; tests/test_lazy_api.py checks it.
"""

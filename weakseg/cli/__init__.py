"""The ``weakseg`` command line: thin wrappers over the Python API, one module per command."""

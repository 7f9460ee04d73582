"""Exception hierarchy: every error names the file, row or key it is about."""

from __future__ import annotations


class WeaksegError(Exception):
    """Base class of all weakseg errors (the CLI turns these into clean messages)."""


class SlideError(WeaksegError):
    """A slide or mask cannot be opened or read, or lacks required metadata."""


class MaskMismatchError(SlideError):
    """A mask's geometry does not match its slide."""


class ManifestError(WeaksegError):
    """A cohort manifest / PANDA CSV is malformed (the message names the row)."""


class BagError(WeaksegError):
    """A tile bag is missing, incomplete or violates the bag contract."""


class RecipeError(WeaksegError):
    """A recipe YAML is invalid (the message names the key path)."""

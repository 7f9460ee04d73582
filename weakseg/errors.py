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


class ResolutionMismatchError(WeaksegError):
    """Bags to predict or evaluate differ in tile size or pixel size from the model's training bags."""


class AnnotationError(WeaksegError):
    """An annotation file is malformed, unmatched or inconsistent with its slide (names the file and feature)."""


class OutputError(WeaksegError):
    """The output folder cannot take a file (full disk, no permission, read-only): names the path."""


class OutputPathError(WeaksegError):
    """An output folder or file that cannot be written (not a folder, a folder where a file goes, no permission)."""


class EncoderWeightsError(WeaksegError):
    """Pretrained weights for an encoder were requested but no local file provides them."""


class SynthConfigError(WeaksegError, ValueError):
    """Invalid synthetic-cohort option (the message names the option)."""


class TrainingError(WeaksegError):
    """A learner's hooks broke the training engine's contract (no batches, missing monitored metric, ...)."""


class NonFiniteLossError(WeaksegError):
    """A training step produced a NaN or infinite loss; the run stops (``last.pt`` keeps the previous epoch)."""


class WeightsNotFoundError(WeaksegError, FileNotFoundError):
    """A local pretrained checkpoint named by the user does not exist (nothing is downloaded)."""


def locate_tile(err: BaseException) -> tuple[str, int | None] | None:
    """``(bag path, tile row)`` where ``err`` was raised while a :class:`~weakseg.bags.Bag` read its data.

    Found from the traceback: the innermost frame of a ``Bag`` reading method (with the row when
    the frame shows which tile it was decoding), following ``__cause__`` / ``__context__``.
    ``None`` when ``err`` did not come from reading a bag (then it is not blamed on one).
    """
    seen: set[int] = set()
    found: tuple[str, int | None] | None = None
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            bag = local.get("self")
            if _is_bag(bag) and tb.tb_frame.f_code.co_name.startswith(("read", "iter")):
                row = None
                idx, i = local.get("idx"), local.get("i")
                if idx is not None and isinstance(i, int):
                    try:
                        import numpy as np

                        row = int(np.asarray(idx).ravel()[i])
                    except (IndexError, TypeError, ValueError):
                        row = None
                found = (str(bag.path), row)
            tb = tb.tb_next
        if found is not None:
            return found
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def _is_bag(obj: object) -> bool:
    """``obj`` is a :class:`weakseg.bags.Bag` (checked by name: errors.py must not import bags)."""
    return any(c.__name__ == "Bag" and c.__module__ == "weakseg.bags" for c in type(obj).__mro__)


def describe_failure(err: BaseException) -> tuple[str, int | None]:
    """One line for a per-item failure (``failures.csv``): the message, and the tile row when known.

    A :class:`WeaksegError` already names its file, row or key; any other exception (a damaged
    JPEG tile, a NaN, an unknown mask label) is shown with its type, prefixed by the tile that
    was being read when that is known.
    """
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, WeaksegError):
        return text, None
    where = locate_tile(err)
    row = where[1] if where is not None else None
    prefix = f"tile {row}: " if row is not None else ""
    return f"{prefix}{type(err).__name__}: {text}", row

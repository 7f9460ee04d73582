"""Streaming sliding-window stitching: exact reconstruction, coverage, streaming order, errors."""

from __future__ import annotations

import numpy as np
import pytest

import weakseg  # noqa: F401
from weakseg.maps.stitch import StitchGrid, blend_window, stream_stitch, window_starts


def field(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A smooth function of absolute coordinates (what every window 'predicts')."""
    return (np.sin(ys / 17.0)[:, None] * np.cos(xs / 23.0)[None, :] + 0.001 * xs[None, :]).astype(np.float32)


def predictor(grid: StitchGrid, keep=lambda x, y: True):
    def predict_band(y: int, xs: np.ndarray):
        kept = np.array([x for x in xs if keep(int(x), y)], dtype=np.int64)
        w = grid.window
        preds = [field(np.arange(y, y + w, dtype=float), np.arange(x, x + w, dtype=float)) for x in kept]
        return kept, np.asarray(preds, dtype=np.float32).reshape(len(kept), w, w)

    return predict_band


def assemble(grid: StitchGrid, predict_band) -> tuple[np.ndarray, np.ndarray]:
    values = np.full(grid.out_shape, np.nan, dtype=np.float32)
    covered = np.zeros(grid.out_shape, dtype=bool)
    row = 0
    for y0, v, c in stream_stitch(grid, predict_band):
        assert y0 == row, "strips must be contiguous and in order"
        values[y0 : y0 + len(v)] = v
        covered[y0 : y0 + len(v)] = c
        row += len(v)
    assert row == grid.out_shape[0]
    return values, covered


def test_window_starts_cover_with_overhang() -> None:
    np.testing.assert_array_equal(window_starts(1000, 512, 256), [0, 256, 512])
    np.testing.assert_array_equal(window_starts(100, 512, 256), [0])
    np.testing.assert_array_equal(window_starts(768, 512, 256), [0, 256])


def test_blend_window_positive_and_separable() -> None:
    w = blend_window(8)
    assert w.min() > 0 and w.shape == (8, 8)
    np.testing.assert_allclose(w, np.outer(w[0], w[0]) / w[0, 0], rtol=1e-5)
    assert w[0, 0] < w[4, 4]


@pytest.mark.parametrize("height,width,window,step", [(150, 230, 64, 32), (97, 61, 32, 24), (40, 40, 64, 64)])
def test_reconstructs_known_function_exactly(height: int, width: int, window: int, step: int) -> None:
    grid = StitchGrid(height, width, window, step)
    values, covered = assemble(grid, predictor(grid))
    assert covered.all()
    expected = field(np.arange(height, dtype=float), np.arange(width, dtype=float))
    np.testing.assert_allclose(values, expected, atol=1e-5)


def test_downsampled_map_is_block_mean() -> None:
    grid = StitchGrid(100, 130, 32, 16, downsample=4)
    values, _ = assemble(grid, predictor(grid))
    assert values.shape == (25, 33)
    ys, xs = np.arange(25 * 4, dtype=float), np.arange(33 * 4, dtype=float)
    expected = field(ys, xs).reshape(25, 4, 33, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(values, expected, atol=1e-5)


def test_skipped_windows_leave_uncovered_zeros() -> None:
    grid = StitchGrid(128, 256, 64, 32)
    values, covered = assemble(grid, predictor(grid, keep=lambda x, y: x <= 64))  # windows end at 128
    assert covered[:, :128].all() and not covered[:, 128:].any()
    assert (values[:, 128:] == 0).all()
    expected = field(np.arange(128, dtype=float), np.arange(128, dtype=float))
    np.testing.assert_allclose(values[:, :128], expected, atol=1e-5)


def test_rows_are_emitted_before_later_bands_run() -> None:
    grid = StitchGrid(256, 64, 64, 32)
    inner = predictor(grid)
    events: list[tuple[str, int]] = []

    def predict_band(y, xs):
        events.append(("band", y))
        return inner(y, xs)

    for y0, v, _ in stream_stitch(grid, predict_band):
        events.append(("rows", y0 + len(v)))
    # after band y, rows up to the next band's start are final and emitted at once
    for i, (kind, y) in enumerate(events[:-2]):
        if kind == "band":
            assert events[i + 1] == ("rows", y + 32)


def test_bad_geometry_and_predictions() -> None:
    with pytest.raises(ValueError, match="step"):
        StitchGrid(10, 10, 32, 64)
    with pytest.raises(ValueError, match="multiples"):
        StitchGrid(10, 10, 30, 15, downsample=4)
    grid = StitchGrid(64, 64, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        list(stream_stitch(grid, lambda y, xs: (xs, np.zeros((len(xs), 16, 16)))))
    with pytest.raises(ValueError, match="predictions"):
        list(stream_stitch(grid, lambda y, xs: (xs, np.zeros((1, 32, 32)))))

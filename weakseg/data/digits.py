"""MNIST-bags-style MIL problems from scikit-learn's bundled 8×8 digits (nothing downloads)."""

from __future__ import annotations

from typing import Literal

import numpy as np

#: Fraction of the 1,797 digit images reserved for ``split="test"`` bags.
TEST_FRACTION = 1 / 3


def _digit_pool(split: Literal["train", "test", "all"]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8) in [0, 1]
    target = data.target.astype(np.int64)
    if split == "all":
        return images, target
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    order = np.random.default_rng(12345).permutation(len(images))  # fixed, independent of the bag seed
    n_test = int(round(len(images) * TEST_FRACTION))
    keep = order[:n_test] if split == "test" else order[n_test:]
    return images[keep], target[keep]


def make_digit_bags(
    n_bags: int,
    mean_size: float = 10,
    std: float = 2,
    target: int = 9,
    seed: int = 0,
    split: Literal["train", "test", "all"] = "all",
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Balanced digit bags as in Ilse et al. (2018): a bag is positive iff it contains ``target``.

    Bag sizes are ``round(N(mean_size, std))`` (at least 1). Half of the bags (rounded down) are
    negative and hold only non-target digits; positive bags draw from all digits and get one
    random position replaced by a target digit when none was drawn. ``split`` picks disjoint digit
    images for training and test bags.

    Returns ``(bags, y, instance_labels)``: float32 ``(N, 1, 8, 8)`` images in [0, 1], int labels,
    and per bag a 0/1 array marking the target digits.
    """
    if n_bags < 1:
        raise ValueError(f"n_bags must be >= 1, got {n_bags}")
    images, digits = _digit_pool(split)
    rng = np.random.default_rng(seed)
    pos_pool = np.flatnonzero(digits == target)
    neg_pool = np.flatnonzero(digits != target)
    if pos_pool.size == 0:
        raise ValueError(f"no digit {target} in the pool (targets are 0-9)")
    y = np.zeros(n_bags, dtype=np.int64)
    y[rng.permutation(n_bags)[: n_bags - n_bags // 2]] = 1
    bags, inst = [], []
    for label in y:
        n = max(1, int(round(rng.normal(mean_size, std))))
        if label:
            idx = rng.integers(0, len(images), n)
            if not (digits[idx] == target).any():
                idx[rng.integers(0, n)] = rng.choice(pos_pool)
        else:
            idx = rng.choice(neg_pool, n)
        bags.append(images[idx])
        inst.append((digits[idx] == target).astype(np.int64))
    return bags, y, inst

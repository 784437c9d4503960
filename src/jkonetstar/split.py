"""Train/test split of a population time course, by trajectory or per snapshot."""

from __future__ import annotations

import numpy as np

__all__ = ["split"]

SPLITS = ("trajectory", "population")


def split(
    rng: np.random.Generator,
    x: np.ndarray,
    t: np.ndarray,
    particle: np.ndarray | None = None,
    *,
    test_ratio: float = 0.5,
    by: str = "trajectory",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Returns ``((x_train, t_train), (x_test, t_test))``, rows ordered by time then original order.

    Args:
        rng: NumPy generator that draws the test set.
        x: positions ``[n_total, d]``; t: snapshot labels ``[n_total]``.
        particle: trajectory id per row; required for ``by="trajectory"``.
        test_ratio: share of trajectories (or of each snapshot) held out, in (0, 1).
        by: ``"trajectory"``: the same particles are held out at every time (paper Exp. 4.1-4.3);
            ``"population"``: an independent share of every snapshot (paper Sec. 4.4).

    Raises:
        ValueError: for a ratio outside (0, 1), an unknown ``by``, or trajectory split without ids.
    """
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio!r}")
    if by not in SPLITS:
        raise ValueError(f"unknown split {by!r}: choose one of {list(SPLITS)}")
    x, t = np.asarray(x), np.asarray(t)
    if by == "trajectory":
        if particle is None or np.any(np.asarray(particle) < 0):
            raise ValueError("split by trajectory needs particle ids; use by='population' for real data")
        ids = np.unique(particle)
        n_test = int(round(test_ratio * len(ids)))
        if not 0 < n_test < len(ids):
            raise ValueError(f"test_ratio={test_ratio} leaves an empty train or test set of {len(ids)} trajectories")
        is_test = np.isin(particle, rng.permutation(ids)[:n_test])
    else:
        is_test = np.zeros(len(t), dtype=bool)
        for label in np.unique(t):
            rows = np.flatnonzero(t == label)
            n_test = int(round(test_ratio * len(rows)))
            if not 0 < n_test < len(rows):
                raise ValueError(f"test_ratio={test_ratio} leaves snapshot {label} ({len(rows)} points) empty")
            is_test[rng.permutation(rows)[:n_test]] = True
    order = np.argsort(t, kind="stable")
    train, test = order[~is_test[order]], order[is_test[order]]
    return (x[train], t[train]), (x[test], t[test])

"""Loading population snapshots from files: the user's own data and the embryoid-body RNA time course.

Accepted forms, all returned as the flat population ``{"x" [n, d] float32, "t" [n] int32}`` with snapshot
labels renumbered 0..T in increasing order of the original time values:

- ``.npz`` with ``X`` (or ``x``) ``[n, d]`` and integer time labels ``t`` ``[n]``;
- ``.csv`` with coordinate columns and one time column (``time_column``, default ``"t"``);
- a directory with ``data.npy`` ``[n, d]`` and ``sample_labels.npy`` ``[n]`` (the JKOnet* RNA input form);
- TrajectoryNet's ``eb_velocity_v5.npz`` (``pcs`` ``[n, 100]``, ``sample_labels``): every PC column is
  standardised (zero mean, unit variance, as TrajectoryNet and the paper do), then the first
  ``n_pcs`` (5) are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jkonetstar.io import load_npz

__all__ = ["load_population", "standardise_pcs", "RNA_HELP"]

RNA_HELP = (
    "the embryoid-body data (Moon et al. 2019) in TrajectoryNet's form eb_velocity_v5.npz (keys pcs, sample_labels;"
    " from github.com/KrishnaswamyLab/TrajectoryNet, data/eb_velocity_v5.npz) or the preprocessed form"
    " (a directory with data.npy and sample_labels.npy); set rna.path in the config to the file or directory"
)


def standardise_pcs(pcs: np.ndarray, n_pcs: int = 5) -> np.ndarray:
    """Returns the first ``n_pcs`` columns of ``pcs`` after standardising every column over all cells."""
    pcs = np.asarray(pcs, np.float64)
    if pcs.ndim != 2 or pcs.shape[1] < n_pcs:
        raise ValueError(f"pcs must have shape [n, >= {n_pcs}], got {pcs.shape}")
    std = pcs.std(axis=0)
    std[std == 0] = 1.0
    return ((pcs - pcs.mean(axis=0)) / std)[:, :n_pcs]


def _population(path: Path, x, t) -> dict[str, np.ndarray]:
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or t.shape != (len(x),):
        raise ValueError(f"{path}: expected points [n, d] and time labels [n], got shapes {x.shape} and {t.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: coordinates must be finite numbers")
    if not (np.issubdtype(t.dtype, np.integer) or np.all(np.asarray(t, float) == np.round(np.asarray(t, float)))):
        raise ValueError(f"{path}: time labels must be integers, got dtype {t.dtype}")
    labels, t_index = np.unique(np.asarray(t).astype(np.int64), return_inverse=True)
    if len(labels) < 2:
        raise ValueError(f"{path}: need at least two time points, found {labels.tolist()}")
    counts = np.bincount(t_index)
    if counts.min() < 2:
        raise ValueError(f"{path}: time point {labels[counts.argmin()]} has only {counts.min()} point(s)")
    return {"x": x.astype(np.float32), "t": t_index.astype(np.int32), "time_values": labels}


def load_population(path, *, time_column: str = "t", n_pcs: int = 5) -> dict[str, np.ndarray]:
    """Returns ``{"x", "t", "time_values"}`` read from ``path`` (see the module docstring for the forms).

    Raises:
        ValueError: naming the file, for a missing file, an unknown form, missing arrays or columns,
            non-finite coordinates, non-integer times or fewer than two time points.
    """
    path = Path(path)
    if path.is_dir():
        data, labels = path / "data.npy", path / "sample_labels.npy"
        if not (data.is_file() and labels.is_file()):
            raise ValueError(f"{path}: directory without data.npy and sample_labels.npy")
        try:
            return _population(path, np.load(data, allow_pickle=False), np.load(labels, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable data.npy/sample_labels.npy ({err})") from None
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.suffix == ".csv":
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable CSV file ({err})") from None
        if time_column not in frame:
            raise ValueError(f"{path}: no time column {time_column!r} (columns: {list(frame.columns)})")
        coordinates = frame.drop(columns=[time_column])
        return _population(path, coordinates.to_numpy(), frame[time_column].to_numpy())
    if path.suffix == ".npz":
        arrays = load_npz(path)
        if "pcs" in arrays and "sample_labels" in arrays:
            return _population(path, standardise_pcs(arrays["pcs"], n_pcs), arrays["sample_labels"])
        x = arrays.get("X", arrays.get("x"))
        if x is None or "t" not in arrays:
            raise ValueError(f"{path}: expected arrays X (or x) and t, or pcs and sample_labels; found {sorted(arrays)}")
        return _population(path, x, arrays["t"])
    raise ValueError(f"{path}: unsupported data file; use .npz (X, t), .csv (coordinates + {time_column!r} column), "
                     "or a directory with data.npy and sample_labels.npy")

"""Loading population snapshots from files: the user's own data and the embryoid-body RNA time course.

Accepted forms, all returned as the flat population ``{"x" [n, d] float32, "t" [n] int32}`` (with
``"particle"`` ids and a ``"test"`` mask where the data have them) with snapshot labels renumbered 0..T in
increasing order of the original time values:

- ``.npz`` with ``X`` (or ``x``) ``[n, d]``, integer time labels ``t`` ``[n]`` and optional particle
  ids ``particle`` ``[n]`` (one id at several times: the same particle observed again, paired data);
- ``.csv`` with coordinate columns, one time column (``time_column``, default ``"t"``) and an optional
  particle id column (``particle_column``, default ``"particle"``);
- a directory with ``data.npy`` ``[n, d]`` and ``sample_labels.npy`` ``[n]`` (the JKOnet* RNA input form),
  or with the pre-split ``train_data.npy``, ``train_sample_labels.npy``, ``test_data.npy`` and
  ``test_sample_labels.npy`` (the upstream code's form);
- TrajectoryNet's ``eb_velocity_v5.npz`` (``pcs`` ``[n, 100]``, ``sample_labels``): every PC column is
  standardised (zero mean, unit variance, as TrajectoryNet and the paper do), then the first
  ``n_pcs`` (5) are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jkonetstar.io import load_npz

__all__ = ["load_population", "is_split_directory", "standardise_pcs", "RNA_HELP", "SPLIT_FILES"]

SPLIT_FILES = ("train_data.npy", "train_sample_labels.npy", "test_data.npy", "test_sample_labels.npy")
"""The upstream code's pre-split directory form: points and time labels of the training and test parts."""

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


def _population(path: Path, x, t, particle=None) -> dict[str, np.ndarray]:
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or t.shape != (len(x),):
        raise ValueError(f"{path}: expected points [n, d] and time labels [n], got shapes {x.shape} and {t.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: coordinates must be finite numbers")
    if not (np.issubdtype(t.dtype, np.integer) or np.all(np.asarray(t, float) == np.round(np.asarray(t, float)))):
        raise ValueError(f"{path}: time labels must be integers, got dtype {t.dtype}")
    population = {"x": x.astype(np.float32), "t": np.asarray(t).astype(np.int64)}
    if particle is not None:
        particle = np.asarray(particle)
        if particle.shape != t.shape or not np.issubdtype(particle.dtype, np.integer) or np.any(particle < 0):
            raise ValueError(f"{path}: particle ids must be non-negative integers, one per row; got dtype "
                             f"{particle.dtype}, shape {particle.shape}")
        for label in np.unique(population["t"]):
            ids, counts = np.unique(particle[population["t"] == label], return_counts=True)
            if np.any(counts > 1):
                raise ValueError(f"{path}: particle id {ids[counts > 1][0]} appears twice at time {label}")
        population["particle"] = particle.astype(np.int64)
    return population


def _renumbered(path: Path, population: dict) -> dict[str, np.ndarray]:
    labels, t_index = np.unique(population["t"], return_inverse=True)
    if len(labels) < 2:
        raise ValueError(f"{path}: need at least two time points, found {labels.tolist()}")
    rows = np.flatnonzero(~population["test"]) if "test" in population else np.arange(len(t_index))
    counts = np.bincount(t_index[rows], minlength=len(labels))
    if counts.min() < 2:
        raise ValueError(f"{path}: time point {labels[counts.argmin()]} has only {counts.min()} point(s)")
    return {**population, "t": t_index.astype(np.int32), "time_values": labels}


def _read(path: Path, time_column: str, n_pcs: int, particle_column: str) -> dict[str, np.ndarray]:
    if path.is_dir():
        data, labels = path / "data.npy", path / "sample_labels.npy"
        if not (data.is_file() and labels.is_file()):
            raise ValueError(f"{path}: directory without data.npy and sample_labels.npy"
                             " (or the split form train_data.npy, train_sample_labels.npy, test_*.npy)")
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
        particle = frame[particle_column].to_numpy() if particle_column in frame else None
        coordinates = frame.drop(columns=[c for c in (time_column, particle_column) if c in frame])
        return _population(path, coordinates.to_numpy(), frame[time_column].to_numpy(), particle)
    if path.suffix == ".npz":
        arrays = load_npz(path)
        if "pcs" in arrays and "sample_labels" in arrays:
            return _population(path, standardise_pcs(arrays["pcs"], n_pcs), arrays["sample_labels"])
        x = arrays.get("X", arrays.get("x"))
        if x is None or "t" not in arrays:
            raise ValueError(f"{path}: expected arrays X (or x) and t, or pcs and sample_labels; found {sorted(arrays)}")
        return _population(path, x, arrays["t"], arrays.get("particle"))
    raise ValueError(f"{path}: unsupported data file; use .npz (X, t), .csv (coordinates + {time_column!r} column), "
                     "or a directory with data.npy and sample_labels.npy")


def is_split_directory(path) -> bool:
    """Whether ``path`` is a directory in the upstream pre-split form (:data:`SPLIT_FILES`)."""
    path = Path(path)
    return path.is_dir() and all((path / name).is_file() for name in SPLIT_FILES)


def _split_part(path: Path, part: str) -> dict[str, np.ndarray]:
    try:
        return _population(path, np.load(path / f"{part}_data.npy", allow_pickle=False),
                           np.load(path / f"{part}_sample_labels.npy", allow_pickle=False))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable {part}_data.npy/{part}_sample_labels.npy ({err})") from None


def load_population(path, *, time_column: str = "t", n_pcs: int = 5, particle_column: str = "particle",
                    test_path=None) -> dict[str, np.ndarray]:
    """Returns ``{"x", "t", "time_values"}`` read from ``path`` (see the module docstring for the forms).

    Also ``"particle"`` when the rows carry particle ids (an npz array ``particle``, a CSV column
    ``particle_column``): rows with one id at several times are one particle observed several times.
    Also ``"test"`` (bool ``[n]``, the held-out rows) when the data come split: ``test_path``, a
    second file of the same form, or ``path`` a directory in the upstream split form
    (:data:`SPLIT_FILES`). Both parts then share the time labels.

    Raises:
        ValueError: naming the file, for a missing file, an unknown form, missing arrays or columns,
            non-finite coordinates, non-integer times, bad or repeated particle ids, fewer than two time
            points, or train and test parts with different time points or dimensions.
    """
    path = Path(path)
    if test_path is not None and is_split_directory(path):
        raise ValueError(f"{path}: already split into train_*.npy and test_*.npy; give no separate test file")
    if is_split_directory(path):
        train, test, where = _split_part(path, "train"), _split_part(path, "test"), path
    elif test_path is not None:
        test_path = Path(test_path)
        train = _read(path, time_column, n_pcs, particle_column)
        test = _read(test_path, time_column, n_pcs, particle_column)
        where = f"{path} and {test_path}"
    else:
        return _renumbered(path, _read(path, time_column, n_pcs, particle_column))
    if train["x"].shape[1] != test["x"].shape[1]:
        raise ValueError(f"{where}: train points have d = {train['x'].shape[1]}, test points d = {test['x'].shape[1]}")
    if not np.array_equal(np.unique(train["t"]), np.unique(test["t"])):
        raise ValueError(f"{where}: train and test parts have different time points "
                         f"({np.unique(train['t']).tolist()} vs {np.unique(test['t']).tolist()})")
    if ("particle" in train) != ("particle" in test):
        raise ValueError(f"{where}: particle ids in one part only")
    population = {key: np.concatenate([train[key], test[key]]) for key in train}
    population["test"] = np.repeat([False, True], [len(train["x"]), len(test["x"])])
    return _renumbered(path, population)


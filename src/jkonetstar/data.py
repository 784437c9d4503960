"""Loading population snapshots from files: the user's own data and the embryoid-body RNA time course.

Accepted forms, all returned as the flat population ``{"x" [n, d] float32, "t" [n] int32}`` (with
``"particle"`` ids and a ``"test"`` mask where the data have them) with snapshot labels renumbered 0..T in
increasing order of the original time values:

- ``.npz`` with ``X`` (or ``x``) ``[n, d]``, integer time labels ``t`` ``[n]``, optional particle
  ids ``particle`` ``[n]`` (one id at several times: the same particle observed again, paired data) and
  optional ``time_value`` (or ``time_values``) ``[T + 1]``, the real time of each label in sorted label order
  (e.g. days; TIGON's form), which then replaces the labels as the snapshot times;
- ``.csv`` with coordinate columns, one time column (``time_column``, default ``"t"``) and an optional
  particle id column (``particle_column``, default ``"particle"``);
- a directory with ``data.npy`` ``[n, d]`` and ``sample_labels.npy`` ``[n]`` (the JKOnet* RNA input form),
  or with the pre-split ``train_data.npy``, ``train_sample_labels.npy``, ``test_data.npy`` and
  ``test_sample_labels.npy`` (the upstream code's form);
- TrajectoryNet's ``eb_velocity_v5.npz`` (``pcs`` ``[n, 100]``, ``sample_labels``): every PC column is
  standardised (zero mean, unit variance, as TrajectoryNet and the paper do), then the first
  ``n_pcs`` (5) are kept;
- an AnnData ``.h5ad`` file (anndata >= 0.8; read with ``h5py`` following the AnnData on-disk format, without
  the ``anndata`` package): cells are rows, the time is the
  ``.obs`` column ``time_key`` (numeric, or an ordered categorical whose category order is the time
  order), the points are an ``.obsm`` array (``representation``, default ``"X_pca"``) or the first
  ``n_pcs`` principal components (:func:`principal_components`) of ``.X`` or a layer, and particle ids
  come from the ``.obs`` column ``pair_key`` (paired lineage-tracing data).

Written here too: cells with their learnt energies, as an AnnData ``.h5ad`` in the layout anndata writes
(:func:`write_energy_h5ad`, readable by anndata >= 0.8 and by :func:`load_population`) and as a tidy CSV
(:func:`write_energy_csv`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jkonetstar.io import load_npz

__all__ = ["load_population", "peek", "files", "Options", "Peek", "Format", "FORMATS", "is_split_directory",
           "standardise_pcs", "principal_components", "write_energy_h5ad", "write_energy_csv", "RNA_HELP",
           "SPLIT_FILES"]

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


def principal_components(matrix: np.ndarray, n_pcs: int) -> np.ndarray:
    """Returns the scores of the first ``n_pcs`` principal components of ``matrix``, shape ``[n, n_pcs]``, float64.

    Each column (gene) is centred, not scaled. With the thin SVD X_c = U S V^T (NumPy), the scores are
    X_c V_{:, :n_pcs} = U_{:, :n_pcs} S_{:n_pcs}, in decreasing order of explained variance S_k^2 / (n - 1).
    Signs are fixed so that each component's loading (row of V^T) of largest magnitude is positive
    (scikit-learn's ``svd_flip`` convention for ``PCA``), which makes the result deterministic.

    Args:
        matrix: cells by genes, shape ``[n, g]``, finite.
        n_pcs: components kept, 1 <= n_pcs <= min(n, g).
    """
    centred = np.asarray(matrix, np.float64) - np.asarray(matrix, np.float64).mean(axis=0)
    u, singular_values, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return (u[:, :n_pcs] * singular_values[:n_pcs]) * signs[:n_pcs]


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


def _renumbered(path: Path, population: dict, time_names=None) -> dict[str, np.ndarray]:
    times = population.get("_time", population["t"])  # "_time": the real time per row (.h5ad, npz time_value)
    labels, t_index = np.unique(times, return_inverse=True)
    if len(labels) < 2:
        raise ValueError(f"{path}: need at least two time points, found {labels.tolist()}")
    rows = np.flatnonzero(~population["test"]) if "test" in population else np.arange(len(t_index))
    counts = np.bincount(t_index[rows], minlength=len(labels))
    if counts.min() < 2:
        raise ValueError(f"{path}: time point {labels[counts.argmin()]} has only {counts.min()} point(s)")
    renumbered = {key: value for key, value in population.items() if key != "_time"}
    renumbered.update(t=t_index.astype(np.int32), time_values=labels)
    if time_names is not None:
        renumbered["time_names"] = np.asarray(time_names)[labels.astype(np.int64)]
    return renumbered


def _one_line(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


# --- AnnData .h5ad, read with h5py following the AnnData on-disk format (anndata >= 0.8) ---------------------
# Every element carries the attributes encoding-type and encoding-version; a reader dispatches on the pair and
# refuses what it does not know. These are the pairs read here (the versions anndata 0.8 to 0.13 write).
_H5AD_ENCODINGS = {
    "anndata": "0.1.0",  # the root group
    "dataframe": "0.2.0",  # .obs: attributes _index and column-order, one element per column
    "dict": "0.1.0",  # .obsm, .layers
    "array": "0.2.0",  # dense numeric (or boolean) dataset
    "string-array": "0.2.0",  # dataset of variable-length strings
    "categorical": "0.2.0",  # group: codes (-1 missing), categories, attribute ordered
    "nullable-integer": "0.1.0",  # group: values, mask (True where missing)
    "nullable-boolean": "0.1.0",
    "nullable-string-array": "0.1.0",
    "csr_matrix": "0.1.0",  # group: data, indices, indptr, attribute shape
    "csc_matrix": "0.1.0",
}
_H5AD_COLUMNS = ("array", "string-array", "categorical", "nullable-integer", "nullable-boolean",
                 "nullable-string-array")
_H5AD_MATRICES = ("array", "csr_matrix", "csc_matrix")


def _attr_text(value):
    """An HDF5 attribute as str (h5py gives str, bytes or NumPy strings, depending on the writer)."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    return None if value is None else str(value)


def _encoding(path: Path, element, allowed: tuple[str, ...]) -> str:
    """Returns the element's encoding-type, refusing one outside ``allowed`` or of another version."""
    kind = _attr_text(element.attrs.get("encoding-type"))
    version = _attr_text(element.attrs.get("encoding-version"))
    if kind is None:
        raise ValueError(f"{path}: element {element.name} has no encoding-type attribute; not an AnnData "
                         "(anndata >= 0.8) element")
    if kind not in allowed or _H5AD_ENCODINGS.get(kind) != version:
        raise ValueError(f"{path}: element {element.name} has encoding {kind!r} (version {version!r}), which is "
                         f"not supported there (supported: {', '.join(f'{k} {_H5AD_ENCODINGS[k]}' for k in allowed)})")
    return kind


def _member(path: Path, group, key: str, dataset: bool = True):
    """The dataset (or group) ``key`` of ``group``, or a one-line error for a malformed element."""
    import h5py

    item = group.get(key) if isinstance(group, h5py.Group) else None
    if item is None or (dataset and not isinstance(item, h5py.Dataset)):
        raise ValueError(f"{path}: element {group.name} ({_attr_text(group.attrs.get('encoding-type'))}) has no "
                         f"{'dataset' if dataset else 'element'} {key!r}; the file is damaged or not AnnData")
    return item


def _h5ad_array(path: Path, element, allowed=("array", "string-array")) -> np.ndarray:
    """A dense ``array`` (numbers) or ``string-array`` (object array of str) element."""
    import h5py

    kind = _encoding(path, element, allowed)
    if not isinstance(element, h5py.Dataset):
        raise ValueError(f"{path}: element {element.name} ({kind}) is a group, not a dataset")
    if kind == "string-array":
        if h5py.check_string_dtype(element.dtype) is None:
            raise ValueError(f"{path}: element {element.name} (string-array) holds {element.dtype}, not strings")
        return np.asarray(element.asstr()[()], dtype=object)
    return np.asarray(element[()])


def _h5ad_matrix(path: Path, element) -> np.ndarray:
    """A cells-by-features matrix: a dense ``array`` or a ``csr_matrix``/``csc_matrix`` group, made dense."""
    kind = _encoding(path, element, _H5AD_MATRICES)
    if kind == "array":
        return _h5ad_array(path, element, ("array",))
    data, indices, indptr = (np.asarray(_member(path, element, key)[()]) for key in ("data", "indices", "indptr"))
    shape = tuple(int(s) for s in np.atleast_1d(element.attrs.get("shape", ())))
    if len(shape) != 2:
        raise ValueError(f"{path}: element {element.name} ({kind}) has shape attribute {shape}, not [rows, columns]")
    n_major, n_minor = shape if kind == "csr_matrix" else shape[::-1]
    if (indptr.ndim != 1 or len(indptr) != n_major + 1 or indptr[0] != 0
            or indptr[-1] != len(data) or indices.shape != data.shape or np.any(np.diff(indptr) < 0)
            or not np.issubdtype(indices.dtype, np.integer) or np.any(indices < 0) or np.any(indices >= n_minor)):
        raise ValueError(f"{path}: element {element.name} ({kind}) is inconsistent (shape {shape}, "
                         f"{len(data)} values, {len(indptr)} indptr entries)")
    dense = np.zeros(shape, dtype=data.dtype)
    major = np.repeat(np.arange(n_major), np.diff(indptr))
    rows, columns = (major, indices) if kind == "csr_matrix" else (indices, major)
    np.add.at(dense, (rows, columns), data)  # repeated entries add up, as in SciPy's toarray()
    return dense


class _H5adObs:
    """The ``.obs`` dataframe of an open .h5ad file: its column names, and single columns read on demand."""

    def __init__(self, path: Path, handle):
        self.path = path
        self.group = _member(path, handle, "obs", dataset=False)
        _encoding(path, self.group, ("dataframe",))
        order = self.group.attrs.get("column-order")
        if order is None:
            raise ValueError(f"{path}: element /obs (dataframe) has no column-order attribute")
        self.columns = [_attr_text(name) for name in np.atleast_1d(order)]

    def __contains__(self, key) -> bool:
        return key in self.columns

    def __getitem__(self, key: str) -> pd.Series:
        element = _member(self.path, self.group, key, dataset=False)
        kind = _encoding(self.path, element, _H5AD_COLUMNS)
        if kind in ("array", "string-array"):
            values = _h5ad_array(self.path, element)
        elif kind == "categorical":
            codes = _h5ad_array(self.path, _member(self.path, element, "codes"), ("array",))
            categories = _h5ad_array(self.path, _member(self.path, element, "categories"))
            if (not np.issubdtype(codes.dtype, np.integer) or codes.ndim != 1
                    or np.any((codes < -1) | (codes >= len(categories)))):
                raise ValueError(f"{self.path}: element {element.name} (categorical) has codes outside "
                                 f"-1..{len(categories) - 1}")
            ordered = bool(element.attrs.get("ordered", False))
            return pd.Series(pd.Categorical.from_codes(codes, categories=categories, ordered=ordered))
        else:  # nullable-*: values, and a mask that is True where a value is missing
            values = _h5ad_array(self.path, _member(self.path, element, "values"),
                                 ("string-array",) if kind == "nullable-string-array" else ("array",))
            mask = _h5ad_array(self.path, _member(self.path, element, "mask"), ("array",))
            if mask.dtype != bool or mask.shape != values.shape:
                raise ValueError(f"{self.path}: element {element.name} ({kind}) has a mask of dtype {mask.dtype}, "
                                 f"shape {mask.shape} for values of shape {values.shape}")
            if mask.any():
                if kind == "nullable-integer":
                    return pd.Series(pd.arrays.IntegerArray(values, mask))
                if kind == "nullable-boolean":
                    return pd.Series(pd.arrays.BooleanArray(values, mask))
                return pd.Series(np.where(mask, None, values), dtype=object)
        if values.ndim != 1:
            raise ValueError(f"{self.path}: element {element.name} is not one value per cell (shape {values.shape})")
        return pd.Series(values)


def _h5ad_times(path: Path, obs: _H5adObs, time_key) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns each cell's time as float64 (category codes for an ordered categorical) and the category names."""
    if time_key is None or time_key not in obs:
        what = "set time_key to the .obs column of the cells' times" if time_key is None else \
            f"no .obs column {time_key!r}"
        raise ValueError(f"{path}: {what} (have {list(obs.columns)})")
    column = obs[time_key]
    if int(column.isna().sum()):
        raise ValueError(f"{path}: .obs column {time_key!r} has {int(column.isna().sum())} missing value(s)")
    names = None
    if isinstance(column.dtype, pd.CategoricalDtype) and column.cat.ordered:
        times = column.cat.codes.to_numpy().astype(np.float64)
        names = np.asarray([str(c) for c in column.cat.categories])
    elif pd.api.types.is_bool_dtype(column.dtype):
        raise ValueError(f"{path}: .obs column {time_key!r} is boolean, not a time")
    elif pd.api.types.is_numeric_dtype(column.dtype):
        times = column.to_numpy(np.float64)
    else:  # strings or an unordered categorical: only numbers written as text have an order
        values = pd.Series(np.asarray(column, dtype=object))
        parsed = pd.to_numeric(values, errors="coerce")
        if parsed.isna().any():
            bad = sorted({str(v) for v in values[parsed.isna()]})
            raise ValueError(f"{path}: .obs column {time_key!r} holds non-numeric values {bad[:5]} without an order;"
                             " make it numeric or an ordered categorical (categories in time order)")
        times = parsed.to_numpy(np.float64)
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{path}: .obs column {time_key!r} has non-finite times")
    if len(np.unique(times)) < 2:
        raise ValueError(f"{path}: .obs column {time_key!r} has fewer than two time points "
                         f"({np.unique(column.astype(str)).tolist()})")
    return times, names


def _h5ad_mapping(path: Path, handle, name: str):
    """The ``dict`` group ``name`` (.obsm, .layers) of an open .h5ad file; an absent one is empty."""
    if name not in handle:
        return {}
    group = _member(path, handle, name, dataset=False)
    _encoding(path, group, ("dict",))
    return group


def _h5ad_points(path: Path, handle, representation: str, n_pcs: int) -> np.ndarray:
    """Returns the cells' coordinates: an .obsm array, or the first n_pcs principal components of .X or a layer."""
    reduce = _is_pca_representation(representation)
    obsm = _h5ad_mapping(path, handle, "obsm")
    if reduce:
        if representation == "X":
            if "X" not in handle:
                raise ValueError(f"{path}: .X is empty; use an .obsm representation (have {list(obsm)})")
            where, matrix = ".X", _h5ad_matrix(path, handle["X"])
        else:
            layer, layers = representation.removeprefix("layers/"), _h5ad_mapping(path, handle, "layers")
            if layer not in layers:
                raise ValueError(f"{path}: no layer {layer!r} (have {list(layers)})")
            where, matrix = f"layer {layer!r}", _h5ad_matrix(path, layers[layer])
        if isinstance(n_pcs, bool) or int(n_pcs) != n_pcs or matrix.ndim != 2 or not 1 <= n_pcs <= min(matrix.shape):
            raise ValueError(f"{path}: n_pcs = {n_pcs!r} must be an integer between 1 and min(cells, genes) of "
                             f"{where}, which has {matrix.shape[0]} cells and {matrix.shape[-1]} genes")
    else:
        if representation not in obsm:
            raise ValueError(f"{path}: no .obsm {representation!r} (have {list(obsm)}); or representation "
                             f"'X' or 'layers/<name>' (layers: {list(_h5ad_mapping(path, handle, 'layers'))}) "
                             "for a PCA")
        where, matrix = f".obsm {representation!r}", _h5ad_matrix(path, obsm[representation])
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"{path}: {where} is not a numeric [cells, d] array (dtype {matrix.dtype}, shape "
                         f"{matrix.shape})")
    bad = ~np.all(np.isfinite(matrix), axis=1)
    if bad.any():
        raise ValueError(f"{path}: {where} has NaN or infinite values in {int(bad.sum())} cell(s)")
    return principal_components(matrix, int(n_pcs)) if reduce else matrix


def _is_pca_representation(representation: str) -> bool:
    return representation == "X" or representation.startswith("layers/")


def _h5ad_particles(path: Path, obs: _H5adObs, pair_key: str) -> np.ndarray:
    """Returns the particle id of each cell: the .obs column's integers, or codes of its sorted distinct values."""
    if pair_key not in obs:
        raise ValueError(f"{path}: no .obs column {pair_key!r} for pair_key (have {list(obs.columns)})")
    column = obs[pair_key]
    if int(column.isna().sum()):
        raise ValueError(f"{path}: .obs column {pair_key!r} (pair_key) has {int(column.isna().sum())} missing value(s)")
    values = column.to_numpy()
    if np.issubdtype(values.dtype, np.integer) and values.min() >= 0:
        return values.astype(np.int64)
    return pd.factorize(np.asarray(values, dtype=str), sort=True)[0].astype(np.int64)


def _read_h5ad(path: Path, *, time_key, representation: str, n_pcs: int, pair_key) -> tuple[dict, np.ndarray | None]:
    try:
        import h5py  # imported here: only .h5ad input needs it
    except ImportError:
        raise ImportError(f"{path}: reading .h5ad files needs the h5py package") from None
    try:
        handle = h5py.File(path, "r")
    except Exception as err:  # h5py raises OSError for a non-HDF5 file, others for a damaged one
        raise ValueError(f"{path}: not a readable .h5ad file ({_one_line(err)})") from None
    with handle:
        if "encoding-type" not in handle.attrs:
            raise ValueError(f"{path}: no encoding-type attribute on the root group: an .h5ad file written by anndata "
                             "< 0.8 (or not by anndata); re-save it with anndata >= 0.8 "
                             "(anndata.read_h5ad(path).write_h5ad(path))")
        try:
            _encoding(path, handle, ("anndata",))
            obs = _H5adObs(path, handle)
            times, names = _h5ad_times(path, obs, time_key)
            x = _h5ad_points(path, handle, representation, n_pcs)
            particle = None if pair_key is None else _h5ad_particles(path, obs, pair_key)
        except Exception as err:
            if isinstance(err, ValueError) and str(err).startswith(f"{path}: "):
                raise
            raise ValueError(f"{path}: not a readable .h5ad file ({_one_line(err)})") from None
    time_index = np.unique(times, return_inverse=True)[1]
    return {**_population(path, x, time_index, particle), "_time": times}, names


# --- Writing energies out: AnnData .h5ad (the layout anndata >= 0.8 writes, with h5py) and a tidy CSV ----------
# The elements written, each with its encoding-type and encoding-version: the root ("anndata" 0.1.0); .X
# (optional, "array"); .obs and .var ("dataframe" 0.2.0 with attributes _index and column-order, index a
# "string-array"); columns "array" (numbers, booleans), "string-array" (text) or "categorical" (pandas
# Categorical: codes, categories, attribute ordered); .obsm (a "dict" of [n, k] "array"s); empty .layers,
# .obsp, .varm, .varp dicts; .uns (a "dict" of "string" / "numeric-scalar" scalars and 1-D arrays).
# Indices and text are written as "string-array" (not anndata 0.12's "nullable-string-array"), which every
# anndata >= 0.8 reads.


def _h5ad_encode(element, kind: str) -> None:
    element.attrs["encoding-type"] = kind
    element.attrs["encoding-version"] = _H5AD_ENCODINGS.get(kind, "0.2.0")  # string, numeric-scalar: 0.2.0


def _h5ad_text(group, key: str, values) -> None:
    import h5py

    group.create_dataset(key, data=np.asarray([str(v) for v in values], dtype=object), dtype=h5py.string_dtype())
    _h5ad_encode(group[key], "string-array")


def _h5ad_write_dict(handle, name: str):
    group = handle.create_group(name)
    _h5ad_encode(group, "dict")
    return group


def _h5ad_write_dataframe(handle, name: str, index, columns: dict) -> None:
    import h5py

    group = handle.create_group(name)
    _h5ad_encode(group, "dataframe")
    group.attrs["_index"] = "_index"
    # anndata writes an empty column order as an empty float array
    group.attrs["column-order"] = (np.asarray(list(columns), dtype=object).astype(h5py.string_dtype()) if columns
                                   else np.array([], dtype=np.float64))
    _h5ad_text(group, "_index", index)
    for key, values in columns.items():
        if isinstance(values, pd.Categorical):
            element = group.create_group(key)
            _h5ad_encode(element, "categorical")
            element.attrs["ordered"] = np.bool_(values.ordered)
            n_categories = len(values.categories)
            codes_dtype = next(d for d in (np.int8, np.int16, np.int32, np.int64) if n_categories < np.iinfo(d).max)
            element.create_dataset("codes", data=np.asarray(values.codes, dtype=codes_dtype))
            _h5ad_encode(element["codes"], "array")
            categories = np.asarray(values.categories)
            if np.issubdtype(categories.dtype, np.number):
                element.create_dataset("categories", data=categories)
                _h5ad_encode(element["categories"], "array")
            else:
                _h5ad_text(element, "categories", categories)
        elif values.dtype.kind in "biuf":
            group.create_dataset(key, data=values)
            _h5ad_encode(group[key], "array")
        else:
            _h5ad_text(group, key, values)


def _energy_columns(path: Path, x, obs, obsm) -> tuple[int, dict, dict]:
    """Checks the writers' arguments: one row per cell everywhere; returns n, the obs columns and obsm arrays."""
    columns, arrays = {}, {}
    for key, values in (obs or {}).items():
        if not isinstance(values, pd.Categorical):
            values = np.asarray(values)
            if values.dtype.kind not in "biufUSO":
                raise ValueError(f"{path}: obs column {key!r} has dtype {values.dtype}: give numbers, booleans, "
                                 "strings or a pandas.Categorical")
        if np.ndim(values) != 1:
            raise ValueError(f"{path}: obs column {key!r} must be one value per cell, got shape {np.shape(values)}")
        columns[key] = values
    for key, values in (obsm or {}).items():
        values = np.asarray(values)
        if values.ndim != 2 or values.dtype.kind not in "biuf":
            raise ValueError(f"{path}: obsm {key!r} must be a numeric [cells, k] array, got dtype {values.dtype}, "
                             f"shape {values.shape}")
        arrays[key] = values
    for key in [*columns, *arrays]:
        if not isinstance(key, str) or not key or "/" in key or key == "_index":
            raise ValueError(f"{path}: bad obs/obsm name {key!r} (a non-empty string without '/', not '_index')")
    rows = {f"obs {k!r}": len(v) for k, v in columns.items()} | {f"obsm {k!r}": len(v) for k, v in arrays.items()}
    if x is not None:
        rows["x"] = len(x)
    if not rows:
        raise ValueError(f"{path}: nothing to write (no x, obs or obsm)")
    if len(set(rows.values())) != 1:
        raise ValueError(f"{path}: one row per cell everywhere, got {rows}")
    return next(iter(rows.values())), columns, arrays


def write_energy_h5ad(path, *, x=None, obs: dict, obsm: dict | None = None, uns: dict | None = None) -> None:
    """Writes cells and their learnt energies as an AnnData ``.h5ad`` file (anndata >= 0.8 reads it), atomically.

    Written with h5py in the layout anndata itself writes (see the comment above); :func:`load_population`
    reads it back (``time_key`` an obs column, ``representation`` an obsm key). The workflow's evaluate job
    writes ``obs`` ``time`` (snapshot time), ``potential`` (learnt V), ``split`` ("train"/"test") and ``obsm``
    ``X_input`` (the coordinates used) and ``drift`` (-grad V).

    Args:
        path: the ``.h5ad`` file.
        x: optional ``.X``, ``[n, d]`` (stored float32; ``.var`` then names its columns "0".."d-1").
        obs: ``.obs`` columns, one value per cell: numbers, booleans, strings, or a ``pandas.Categorical``
            (written as an AnnData categorical, its ``ordered`` flag kept). Cells are named "0".."n-1".
        obsm: ``.obsm`` arrays, ``[n, k]`` numbers each, dtypes kept.
        uns: ``.uns`` metadata: str, int, float or bool values, or 1-D arrays of numbers or strings.

    Raises:
        ValueError: naming the file, for arrays of different lengths, bad shapes, dtypes or names.
        ImportError: without h5py.
    """
    import h5py

    from jkonetstar.io import atomic_path

    path = Path(path)
    if x is not None:
        x = np.asarray(x, np.float32)
        if x.ndim != 2:
            raise ValueError(f"{path}: x must be [cells, d], got shape {x.shape}")
    n, columns, arrays = _energy_columns(path, x, obs, obsm)
    metadata = {}
    for key, value in (uns or {}).items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"{path}: bad uns name {key!r}")
        if not isinstance(value, str | bool | int | float | np.generic | list | tuple | np.ndarray):
            raise ValueError(f"{path}: uns {key!r} is a {type(value).__name__}; give str, numbers or 1-D arrays")
        if not isinstance(value, str) and (np.ndim(value) > 1 or np.asarray(value).dtype.kind not in "biufUS"):
            raise ValueError(f"{path}: uns {key!r} must be a string, a number or a 1-D array of numbers or strings")
        metadata[key] = value
    with atomic_path(path, suffix=".h5ad") as tmp:
        with h5py.File(tmp, "w") as handle:
            _h5ad_encode(handle, "anndata")
            if x is not None:
                handle.create_dataset("X", data=x)
                _h5ad_encode(handle["X"], "array")
            _h5ad_write_dataframe(handle, "obs", range(n), columns)
            _h5ad_write_dataframe(handle, "var", range(0 if x is None else x.shape[1]), {})
            group = _h5ad_write_dict(handle, "obsm")
            for key, values in arrays.items():
                group.create_dataset(key, data=values)
                _h5ad_encode(group[key], "array")
            for name in ("layers", "obsp", "varm", "varp"):
                _h5ad_write_dict(handle, name)
            group = _h5ad_write_dict(handle, "uns")
            for key, value in metadata.items():
                if isinstance(value, str):
                    group.create_dataset(key, data=value, dtype=h5py.string_dtype())
                    _h5ad_encode(group[key], "string")
                elif np.ndim(value) == 0:
                    group.create_dataset(key, data=np.asarray(value))
                    _h5ad_encode(group[key], "numeric-scalar")
                elif np.asarray(value).dtype.kind in "US":
                    _h5ad_text(group, key, np.asarray(value))
                else:
                    group.create_dataset(key, data=np.asarray(value))
                    _h5ad_encode(group[key], "array")


def write_energy_csv(path, *, obs: dict, obsm: dict | None = None) -> None:
    """Writes the same cells as :func:`write_energy_h5ad` as a tidy CSV, one row per cell, atomically.

    Columns: the ``obs`` columns in order (a categorical as its labels), then every ``obsm`` array's
    columns as ``<key>_0``, ``<key>_1``, ... (e.g. ``time, potential, split, X_input_0, X_input_1, drift_0,
    drift_1``). Metadata (``uns``) is left to the ``.h5ad`` file.

    Raises:
        ValueError: naming the file, as :func:`write_energy_h5ad`; also for a column name used twice.
    """
    from jkonetstar.io import atomic_path

    path = Path(path)
    _, columns, arrays = _energy_columns(path, None, obs, obsm)
    table = {key: np.asarray(values) for key, values in columns.items()}
    for key, values in arrays.items():
        for j in range(values.shape[1]):
            name = f"{key}_{j}"
            if name in table:
                raise ValueError(f"{path}: column {name!r} twice (an obs column and an obsm {key!r} column)")
            table[name] = values[:, j]
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(table).to_csv(tmp, index=False)


class Options(NamedTuple):
    """How to read a data file (the `datasets:` settings of the same names; each form uses those it needs)."""

    time_column: str = "t"
    n_pcs: int = 5
    particle_column: str = "particle"
    time_key: str | None = None
    representation: str = "X_pca"
    pair_key: str | None = None


class Peek(NamedTuple):
    """What the workflow checks before any job runs, read from a file's header: the dimension of the points
    (``None`` where it cannot be told without reading the data) and whether the rows carry particle ids."""

    dim: int | None
    particle_ids: bool


class Format(NamedTuple):
    """One input form: ``read(path, options) -> (population, time_names or None)`` (the population as
    :func:`_population` builds it, before renumbering) and ``peek(path, options) -> Peek`` (header only)."""

    read: Callable[[Path, Options], tuple[dict, np.ndarray | None]]
    peek: Callable[[Path, Options], Peek]


def _read_directory(path: Path, options: Options) -> tuple[dict, None]:
    data, labels = path / "data.npy", path / "sample_labels.npy"
    if not (data.is_file() and labels.is_file()):
        raise ValueError(f"{path}: directory without data.npy and sample_labels.npy"
                         " (or the split form train_data.npy, train_sample_labels.npy, test_*.npy)")
    try:
        return _population(path, np.load(data, allow_pickle=False), np.load(labels, allow_pickle=False)), None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable data.npy/sample_labels.npy ({err})") from None


def _peek_directory(path: Path, options: Options) -> Peek:
    name = "train_data.npy" if is_split_directory(path) else "data.npy"
    if not (path / name).is_file():
        return Peek(None, False)
    shape = np.load(path / name, mmap_mode="r").shape
    return Peek(shape[1] if len(shape) == 2 else None, False)


def _read_csv(path: Path, options: Options) -> tuple[dict, None]:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    time_column, particle_column = options.time_column, options.particle_column
    if time_column not in frame:
        raise ValueError(f"{path}: no time column {time_column!r} (columns: {list(frame.columns)})")
    particle = frame[particle_column].to_numpy() if particle_column in frame else None
    coordinates = frame.drop(columns=[c for c in (time_column, particle_column) if c in frame])
    return _population(path, coordinates.to_numpy(), frame[time_column].to_numpy(), particle), None


def _peek_csv(path: Path, options: Options) -> Peek:
    with open(path) as f:
        header = f.readline().strip().split(",")
    return Peek(len([c for c in header if c not in (options.time_column, options.particle_column)]),
                options.particle_column in header)


def _read_npz(path: Path, options: Options) -> tuple[dict, None]:
    arrays = load_npz(path)
    if "pcs" in arrays and "sample_labels" in arrays:
        return _population(path, standardise_pcs(arrays["pcs"], options.n_pcs), arrays["sample_labels"]), None
    x = arrays.get("X", arrays.get("x"))
    if x is None or "t" not in arrays:
        raise ValueError(f"{path}: expected arrays X (or x) and t, or pcs and sample_labels; found {sorted(arrays)}")
    population = _population(path, x, arrays["t"], arrays.get("particle"))
    values = arrays.get("time_value", arrays.get("time_values"))
    if values is not None:
        labels, index = np.unique(population["t"], return_inverse=True)
        values = np.asarray(values, np.float64).ravel()
        if len(values) != len(labels) or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
            raise ValueError(f"{path}: time_value must hold one finite, increasing time per time label "
                             f"({len(labels)} labels {labels.tolist()}), got {values.tolist()}")
        population["_time"] = values[index]
    return population, None


def _peek_npz(path: Path, options: Options) -> Peek:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        particle_ids = "particle.npy" in names
        if "pcs.npy" in names:
            return Peek(options.n_pcs, particle_ids)
        for name in ("X.npy", "x.npy"):
            if name in names:
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape = read_header(f)[0]
                return Peek(shape[1] if len(shape) == 2 else None, particle_ids)
    return Peek(None, particle_ids)  # an unknown form: the reading job names the problem


def _read_h5ad_file(path: Path, options: Options) -> tuple[dict, np.ndarray | None]:
    return _read_h5ad(path, time_key=options.time_key, representation=options.representation, n_pcs=options.n_pcs,
                      pair_key=options.pair_key)


def _peek_h5ad(path: Path, options: Options) -> Peek:
    try:
        import h5py
    except ImportError:
        return Peek(None, False)
    try:
        with h5py.File(path, "r") as handle:
            order = handle["obs"].attrs.get("column-order", []) if "obs" in handle else []
            particle_ids = options.pair_key is not None and options.pair_key in [_attr_text(c) for c in
                                                                                 np.atleast_1d(order)]
            if _is_pca_representation(options.representation):
                return Peek(options.n_pcs, particle_ids)
            element = handle.get(f"obsm/{options.representation}")
            shape = element.attrs.get("shape", element.shape) if element is not None and hasattr(
                element, "attrs") else None
            return Peek(int(shape[1]) if shape is not None and len(shape) == 2 else None, particle_ids)
    except (OSError, KeyError, TypeError, ValueError):
        return Peek(None, False)  # the reading job names the problem


FORMATS: dict[str, Format] = {
    ".npz": Format(_read_npz, _peek_npz),
    ".csv": Format(_read_csv, _peek_csv),
    ".h5ad": Format(_read_h5ad_file, _peek_h5ad),
}
"""Input file forms by suffix (a directory is :data:`DIRECTORY`). A new form is a reader and a header peek
here, and one entry."""

DIRECTORY = Format(_read_directory, _peek_directory)
"""The directory forms: ``data.npy`` + ``sample_labels.npy`` (the split form is read by :func:`load_population`)."""


def _format(path: Path) -> Format:
    if path.is_dir():
        return DIRECTORY
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported data file; use .npz (X, t), .csv (coordinates + a time column), "
                         ".h5ad (AnnData), or a directory with data.npy and sample_labels.npy")
    return FORMATS[path.suffix]


def _read(path: Path, options: Options) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    return _format(path).read(path, options)


def peek(path, **options) -> Peek:
    """What :func:`load_population` would find in one data file or directory, from its header only (the workflow
    checks settings with it before any job runs): the points' dimension and whether the rows carry particle ids."""
    path = Path(path)
    if not path.exists():
        return Peek(None, False)
    return _format(path).peek(path, Options(**options))


def files(path, test_path=None) -> list[str]:
    """The files a data location stands for (a directory: its arrays), e.g. a workflow job's inputs."""
    if test_path is not None:
        return files(path) + files(test_path)
    path = Path(path)
    if is_split_directory(path):
        return [str(path / name) for name in SPLIT_FILES]
    if path.is_dir():
        return [str(path / "data.npy"), str(path / "sample_labels.npy")]
    return [str(path)]


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
                    test_path=None, time_key: str | None = None, representation: str = "X_pca",
                    standardize: bool = False, pair_key: str | None = None) -> dict[str, np.ndarray]:
    """Returns ``{"x", "t", "time_values"}`` read from ``path`` (see the module docstring for the forms).

    ``"t"`` (int32 ``[n]``) numbers the snapshots 0..T in time order and ``time_values[k]`` is the time
    of snapshot k: the integer labels of the file, or for ``.h5ad`` float64 times (the numbers in the
    ``time_key`` column, or the category codes 0..K-1 of an ordered categorical, whose names for each
    snapshot are then ``"time_names"``; categories without cells get no snapshot).

    Also ``"particle"`` when the rows carry particle ids (an npz array ``particle``, a CSV column
    ``particle_column``, an ``.h5ad`` ``.obs`` column ``pair_key``; non-integer ids are numbered in
    sorted order): rows with one id at several times are one particle observed several times.
    Also ``"test"`` (bool ``[n]``, the held-out rows) when the data come split: ``test_path``, a
    second file of the same form, or ``path`` a directory in the upstream split form
    (:data:`SPLIT_FILES`). Both parts then share the time labels.

    Args:
        time_column, particle_column: CSV column names.
        n_pcs: PCs kept of TrajectoryNet's npz, or computed for an ``.h5ad`` ``"X"``/layer representation.
        time_key: ``.h5ad`` only: the ``.obs`` column of times; strings and unordered categoricals are
            accepted only when every value is a number.
        representation: ``.h5ad`` only: an ``.obsm`` key (all its columns are kept), ``"X"``, or
            ``"layers/<name>"``; the last two are reduced by :func:`principal_components` (centred, unscaled).
        standardize: z-score every coordinate column over all rows (test rows included), any form.

    Raises:
        ValueError: naming the file, for a missing file, an unknown form, missing arrays, columns or keys
            (listing those present), non-finite coordinates, non-integer or missing times, unordered
            non-numeric times, a bad ``n_pcs``, bad or repeated particle ids, fewer than two time points,
            or train and test parts with different time points or dimensions.
            An ``.h5ad`` element of an encoding not read here (or an old file without encoding attributes) is
            refused naming the element and its encoding.
        ImportError: for an ``.h5ad`` file without the ``h5py`` package.
    """
    path = Path(path)
    options = Options(time_column, n_pcs, particle_column, time_key, representation, pair_key)
    if test_path is not None and is_split_directory(path):
        raise ValueError(f"{path}: already split into train_*.npy and test_*.npy; give no separate test file")
    names = None
    if is_split_directory(path):
        train, test, where = _split_part(path, "train"), _split_part(path, "test"), path
    elif test_path is not None:
        test_path = Path(test_path)
        if ".h5ad" in (path.suffix, test_path.suffix) and _is_pca_representation(representation):
            raise ValueError(f"{path}: with test_path, use an .obsm representation computed on all cells "
                             f"(a PCA of each file separately would give different axes), not {representation!r}")
        (train, names), (test, test_names) = (_read(p, options) for p in (path, test_path))
        where = f"{path} and {test_path}"
        if ("_time" in train) != ("_time" in test) or not np.array_equal(
                names if names is not None else [], test_names if test_names is not None else []):
            raise ValueError(f"{where}: train and test parts must be of one form (and one time categories)")
    else:
        population, names = _read(path, options)
        return _standardized(_renumbered(path, population, names), standardize)
    if train["x"].shape[1] != test["x"].shape[1]:
        raise ValueError(f"{where}: train points have d = {train['x'].shape[1]}, test points d = {test['x'].shape[1]}")
    time = "_time" if "_time" in train else "t"
    if not np.array_equal(np.unique(train[time]), np.unique(test[time])):
        raise ValueError(f"{where}: train and test parts have different time points "
                         f"({np.unique(train[time]).tolist()} vs {np.unique(test[time]).tolist()})")
    if ("particle" in train) != ("particle" in test):
        raise ValueError(f"{where}: particle ids in one part only")
    population = {key: np.concatenate([train[key], test[key]]) for key in train}
    population["test"] = np.repeat([False, True], [len(train["x"]), len(test["x"])])
    return _standardized(_renumbered(path, population, names), standardize)


def _standardized(population: dict, standardize: bool) -> dict:
    if not standardize:
        return population
    x = population["x"].astype(np.float64)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return {**population, "x": ((x - x.mean(axis=0)) / std).astype(np.float32)}

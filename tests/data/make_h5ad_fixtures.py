"""Writes the AnnData fixtures of tests/test_anndata.py with the real ``anndata`` package.

Run with a Python that has anndata (>= 0.8; the committed files were written by anndata 0.13.4, which
needs Python >= 3.12, so not the project's .venv), from the repository root:

    python tests/data/make_h5ad_fixtures.py

The test suite does not run this script and does not need anndata: it reads the committed ``*.h5ad``
files with jkonetstar's h5py reader and compares what it reads with ``h5ad_expected.npz``, the arrays
taken here from the anndata objects themselves (``adata.X.toarray()``, ``adata.obsm[...]``,
``adata.obs[...]``), so that the reader is checked against an independent writer.

Fixtures (40 cells x 12 genes each):

- ``numeric.h5ad``: dense float32 X, float ``time`` (4 values, not in row order), integer pair ids
  ``clone`` (once per time), ``batch`` strings, boolean ``is_root``, a repeated id column ``bad_clone``,
  ``.obsm["X_pca"]`` (float32) and ``.layers["counts"]`` (dense float64).
- ``ordered.h5ad``: csr_matrix X, ordered categorical ``day`` (day2 < day4 < day10, no cell at day4),
  string pair ids ``clone`` (stored as a categorical), unordered categorical numbers as text
  ``day_number``, non-numeric strings ``stage``, an ordered categorical with one missing value ``day_na``.
- ``nullable.h5ad``: no X, nullable-integer ``time`` and ``clone``, nullable-integer ``time_na`` with a
  missing value, nullable-boolean ``flag``, float ``time_nan`` with NaNs, constant ``const``, unique
  strings ``barcode`` (a nullable-string-array), csc_matrix ``.layers["counts"]``, ``.obsm["X_pca"]``
  (float64), ``.obsm["X_bad"]`` with a NaN in one cell and ``.obsm["meta"]`` a dataframe (an encoding the
  reader refuses in .obsm).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse

HERE = Path(__file__).resolve().parent
N_CELLS, N_GENES = 40, 12


def _expression(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Distinct variances per gene: well separated principal axes, so their signs are well defined.
    scales = np.geomspace(6.0, 0.1, N_GENES)
    return (rng.normal(size=(N_CELLS, N_GENES)) * scales).astype(np.float32)


def _index(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def numeric() -> anndata.AnnData:
    rng = np.random.default_rng(10)
    time = np.repeat([4.0, 0.0, 1.5, 8.25], N_CELLS // 4)
    obs = pd.DataFrame({
        "time": time,
        "clone": np.tile(np.arange(N_CELLS // 4), 4) * 3 + 1,  # integer ids, each once per time point
        "batch": np.resize(["b1", "b2"], N_CELLS),
        "is_root": np.arange(N_CELLS) % 2 == 0,
        "bad_clone": np.zeros(N_CELLS, dtype=np.int64),
    }, index=_index("cell", N_CELLS))
    counts = np.round(np.exp(_expression(5) / 3)).astype(np.float64)
    return anndata.AnnData(X=_expression(0), obs=obs, var=pd.DataFrame(index=_index("gene", N_GENES)),
                           obsm={"X_pca": rng.normal(size=(N_CELLS, 3)).astype(np.float32)},
                           layers={"counts": counts})


def ordered() -> anndata.AnnData:
    x = _expression(1)
    x[np.abs(x) < 0.8] = 0.0  # mostly zeros: a genuinely sparse matrix
    day = pd.Categorical(np.repeat(["day10", "day2"], N_CELLS // 2), categories=["day2", "day4", "day10"],
                         ordered=True)
    day_na = pd.Categorical([None] + ["a", "b"] * (N_CELLS // 2 - 1) + ["a"], categories=["a", "b"], ordered=True)
    obs = pd.DataFrame({
        "day": day,
        "clone": np.tile([f"clone{i:02d}" for i in range(N_CELLS // 2)], 2),
        "day_number": pd.Categorical(np.resize(["10", "3", "21"], N_CELLS)),  # alphabetical: "10" < "21" < "3"
        "stage": np.resize(["day0", "day8", "5"], N_CELLS),
        "day_na": day_na,
    }, index=_index("cell", N_CELLS))
    rng = np.random.default_rng(11)
    return anndata.AnnData(X=scipy.sparse.csr_matrix(x), obs=obs,
                           var=pd.DataFrame(index=_index("gene", N_GENES)),
                           obsm={"X_pca": rng.normal(size=(N_CELLS, 2)).astype(np.float32)})


def nullable() -> anndata.AnnData:
    rng = np.random.default_rng(12)
    time_na = pd.array(np.repeat([0, 3], N_CELLS // 2), dtype="Int64")
    time_na[5] = pd.NA
    time_nan = np.repeat([0.0, 1.0], N_CELLS // 2)
    time_nan[[0, 7]] = np.nan
    flag = pd.array(np.arange(N_CELLS) % 3 == 0, dtype="boolean")
    flag[2] = pd.NA
    obs = pd.DataFrame({
        "time": pd.array(np.repeat([5, 0, 2, 5], N_CELLS // 4), dtype="Int64"),
        "clone": pd.array(100 + np.arange(N_CELLS) % (N_CELLS // 2), dtype="Int64"),  # once per time point
        "time_na": time_na,
        "flag": flag,
        "time_nan": time_nan,
        "const": np.full(N_CELLS, 3.0),
        "barcode": [f"AC{i:03d}GT" for i in rng.permutation(N_CELLS)],
    }, index=_index("cell", N_CELLS))
    counts = np.round(np.exp(_expression(2) / 2)) * (rng.random((N_CELLS, N_GENES)) < 0.4)
    bad = rng.normal(size=(N_CELLS, 2))
    bad[3, 1] = np.nan
    meta = pd.DataFrame({"score": rng.normal(size=N_CELLS)}, index=obs.index)
    return anndata.AnnData(X=None, obs=obs, var=pd.DataFrame(index=_index("gene", N_GENES)),
                           obsm={"X_pca": rng.normal(size=(N_CELLS, 4)), "X_bad": bad, "meta": meta},
                           layers={"counts": scipy.sparse.csc_matrix(counts)}, shape=(N_CELLS, N_GENES))


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if scipy.sparse.issparse(matrix) else np.asarray(matrix)


def _expected(name: str, adata: anndata.AnnData) -> dict[str, np.ndarray]:
    """The arrays anndata holds for one fixture, keyed ``<fixture>__<what>``."""
    out = {"columns": np.asarray(list(adata.obs.columns), dtype=str), "n_obs": np.asarray(adata.n_obs)}
    if adata.X is not None:
        out["X"] = _dense(adata.X)
    for key, value in adata.obsm.items():
        if not isinstance(value, pd.DataFrame):
            out[f"obsm_{key}"] = _dense(value)
    for key in adata.layers.keys():
        if key is not None:  # anndata >= 0.13 lists .X as layer None
            out[f"layer_{key}"] = _dense(adata.layers[key])
    for key, column in adata.obs.items():
        if isinstance(column.dtype, pd.CategoricalDtype):
            out[f"obs_{key}_codes"] = column.cat.codes.to_numpy()
            out[f"obs_{key}_categories"] = np.asarray([str(c) for c in column.cat.categories])
            out[f"obs_{key}_ordered"] = np.asarray(column.cat.ordered)
        else:
            missing = column.isna().to_numpy()
            out[f"obs_{key}_missing"] = missing
            if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
                filled = column.astype(object).where(~missing, 0).to_numpy()
                dtype = bool if pd.api.types.is_bool_dtype(column.dtype) else \
                    np.float64 if pd.api.types.is_float_dtype(column.dtype) else np.int64
                out[f"obs_{key}"] = np.asarray(np.where(missing, np.nan if dtype is np.float64 else 0, filled)
                                               .astype(dtype))
            else:
                out[f"obs_{key}"] = np.asarray(column.astype(object).where(~missing, "").to_numpy(), dtype=str)
    return {f"{name}__{key}": value for key, value in out.items()}


def main() -> None:
    expected = {"anndata_version": np.asarray(version("anndata"))}
    for name, build in (("numeric", numeric), ("ordered", ordered), ("nullable", nullable)):
        adata = build()
        path = HERE / f"{name}.h5ad"
        adata.write_h5ad(path)
        # Expectations from what anndata itself reads back, so that they describe the file as written.
        expected.update(_expected(name, anndata.read_h5ad(path)))
        print(f"{path.name}: {path.stat().st_size} bytes")
    np.savez_compressed(HERE / "h5ad_expected.npz", **expected)
    print(f"h5ad_expected.npz: {(HERE / 'h5ad_expected.npz').stat().st_size} bytes")


if __name__ == "__main__":
    main()

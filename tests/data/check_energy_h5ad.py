"""Checks by hand that the real ``anndata`` package reads what ``jkonetstar.data.write_energy_h5ad`` writes.

Run with a Python that has anndata (>= 0.8; e.g. anndata 0.13.4 needs Python >= 3.12, so not the project's
.venv), from the repository root:

    python tests/data/check_energy_h5ad.py [OUT.h5ad]

It writes a small energies file of the evaluate job's shape (obs time, potential, split, an ordered categorical
day; obsm X_input, drift; uns metadata; with and without X), reads it with ``anndata.read_h5ad`` and compares
every element with what was written; it also writes the AnnData read back again with anndata and reads that
with jkonetstar's reader. Exit code 0 and ``OK`` when everything matches. The test suite does not run this
script (it needs anndata); tests/test_anndata.py checks the attribute layout against anndata's own fixtures.
"""

from __future__ import annotations

import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import anndata  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar.data import load_population, write_energy_h5ad  # noqa: E402


def check(path: Path, with_x: bool) -> None:
    rng = np.random.default_rng(0)
    n, d = 30, 3
    x_input = rng.normal(size=(n, d)).astype(np.float32)
    time = np.repeat([0.0, 1.5, 4.0], n // 3)
    potential = rng.normal(size=n)
    drift = rng.normal(size=(n, d))
    split = np.resize(["train", "test"], n)
    day = pd.Categorical(np.repeat(["day0-3", "day6-9", "day12-15"], n // 3),
                         categories=["day0-3", "day6-9", "day12-15"], ordered=True)
    uns = {"method": "jkonet-star-potential", "seed": 0, "tau": 1.0, "time_values": np.array([0.0, 1.5, 4.0]),
           "time_names": np.array(["a", "b", "c"]), "standardized": False}
    write_energy_h5ad(path, x=x_input if with_x else None,
                      obs={"time": time, "potential": potential, "split": split, "day": day},
                      obsm={"X_input": x_input, "drift": drift}, uns=uns)
    adata = anndata.read_h5ad(path)
    assert adata.n_obs == n and adata.n_vars == (d if with_x else 0), adata
    assert list(adata.obs.columns) == ["time", "potential", "split", "day"], list(adata.obs.columns)
    assert list(adata.obs_names) == [str(i) for i in range(n)]
    np.testing.assert_array_equal(adata.obs["time"].to_numpy(), time)
    np.testing.assert_array_equal(adata.obs["potential"].to_numpy(), potential)
    assert [str(s) for s in adata.obs["split"]] == list(split)
    assert isinstance(adata.obs["day"].dtype, pd.CategoricalDtype) and adata.obs["day"].cat.ordered
    assert list(adata.obs["day"].cat.categories) == list(day.categories)
    np.testing.assert_array_equal(adata.obs["day"].cat.codes.to_numpy(), day.codes)
    assert sorted(adata.obsm) == ["X_input", "drift"]
    np.testing.assert_array_equal(adata.obsm["X_input"], x_input)
    np.testing.assert_array_equal(adata.obsm["drift"], drift)
    if with_x:
        np.testing.assert_array_equal(np.asarray(adata.X), x_input)
        assert adata.X.dtype == np.float32
    else:
        assert adata.X is None
    assert adata.uns["method"] == uns["method"] and adata.uns["seed"] == 0 and adata.uns["tau"] == 1.0
    assert adata.uns["standardized"] is False or adata.uns["standardized"] == np.False_
    np.testing.assert_array_equal(adata.uns["time_values"], uns["time_values"])
    assert [str(s) for s in adata.uns["time_names"]] == ["a", "b", "c"]
    assert not adata.layers and not adata.obsp and not adata.varm and not adata.varp
    # anndata's own rewrite of it reads back the same with jkonetstar's reader.
    again = path.with_name(f"anndata_{path.name}")
    adata.write_h5ad(again)
    ours, theirs = (load_population(p, time_key="time", representation="X_input") for p in (path, again))
    for key in ("x", "t", "time_values"):
        np.testing.assert_array_equal(ours[key], theirs[key])
    np.testing.assert_array_equal(ours["time_values"], [0.0, 1.5, 4.0])


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "energies.h5ad"
    for with_x in (False, True):
        check(out.with_name(f"{'x_' if with_x else ''}{out.name}"), with_x)
    print(f"OK: anndata {version('anndata')} reads jkonetstar.data.write_energy_h5ad's files ({out.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

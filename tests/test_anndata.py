"""Reading AnnData (.h5ad) time courses with jkonetstar.data.load_population: time orders, representations,
the PCA against scikit-learn, particle ids, round trips and one-line errors for bad files and keys; writing
energies out (jkonetstar.data.write_energy_h5ad, write_energy_csv) in anndata's layout; the read job's summary;
the embryoid-body converter scripts/eb_to_h5ad.py.

The reader uses h5py, not the anndata package (which needs Python >= 3.12, or pandas < 3). Its reference is
independent: tests/data/*.h5ad were written by the real anndata package (tests/data/make_h5ad_fixtures.py, run
by hand with a Python that has anndata) and tests/data/h5ad_expected.npz holds the arrays anndata itself read
back from them. Damaged files and encodings the reader refuses are edited copies or small hand-made HDF5 files.
That the real anndata reads the writer's files is checked by hand (tests/data/check_energy_h5ad.py, run with a
Python that has anndata); here the writer's element layout is compared with the anndata-written fixtures.
"""

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.decomposition import PCA

import pandas as pd

from jkonetstar import jobs
from jkonetstar.data import (_H5adObs, _h5ad_matrix, load_population, principal_components, write_energy_csv,
                             write_energy_h5ad)

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[1]
EB_SHARED = ROOT.parent / "shared" / "real-data" / "eb_rna_pca5"
FIXTURES = ("numeric", "ordered", "nullable")
N_CELLS, N_GENES = 40, 12


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "h5ad_expected.npz", allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _of(expected, fixture):
    prefix = f"{fixture}__"
    return {key.removeprefix(prefix): value for key, value in expected.items() if key.startswith(prefix)}


def _copy(fixture, tmp_path, name="cells.h5ad"):
    return Path(shutil.copy(DATA / f"{fixture}.h5ad", tmp_path / name))


def _expression(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(24, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2])).astype(np.float64)


def test_fixtures_are_small_and_written_by_anndata(expected):
    sizes = {name: (DATA / f"{name}.h5ad").stat().st_size for name in FIXTURES}
    assert max(sizes.values()) < 100_000 and sum(sizes.values()) < 300_000, sizes
    assert tuple(int(part) for part in str(expected["anndata_version"]).split(".")[:2]) >= (0, 8)
    for name in FIXTURES:
        with h5py.File(DATA / f"{name}.h5ad", "r") as handle:
            assert handle.attrs["encoding-type"] == "anndata"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_reader_gives_the_arrays_anndata_gives(fixture, expected):
    """Every .obs column, .X, .obsm array and layer read with h5py equals, exactly, what anndata read."""
    want = _of(expected, fixture)
    path = DATA / f"{fixture}.h5ad"
    with h5py.File(path, "r") as handle:
        obs = _H5adObs(path, handle)
        assert obs.columns == want["columns"].tolist()
        for column in obs.columns:
            series = obs[column]
            assert len(series) == int(want["n_obs"])
            if f"obs_{column}_codes" in want:
                np.testing.assert_array_equal(series.cat.codes.to_numpy(), want[f"obs_{column}_codes"])
                assert [str(c) for c in series.cat.categories] == want[f"obs_{column}_categories"].tolist()
                assert series.cat.ordered == bool(want[f"obs_{column}_ordered"])
                continue
            missing = want[f"obs_{column}_missing"]
            np.testing.assert_array_equal(series.isna().to_numpy(), missing)
            values, reference = series[~missing].to_numpy(), want[f"obs_{column}"][~missing]
            if reference.dtype.kind == "U":
                assert [str(v) for v in values] == reference.tolist()
            else:
                np.testing.assert_array_equal(values.astype(reference.dtype), reference)
                assert np.asarray(values).dtype.kind == reference.dtype.kind
        matrices = {"X": "X"} if "X" in want else {}
        matrices.update({key: f"obsm/{key.removeprefix('obsm_')}" for key in want if key.startswith("obsm_")})
        matrices.update({key: f"layers/{key.removeprefix('layer_')}" for key in want if key.startswith("layer_")})
        assert matrices, "fixture without matrices"
        for key, element in matrices.items():
            matrix = _h5ad_matrix(path, handle[element])
            assert matrix.dtype == want[key].dtype, element
            np.testing.assert_array_equal(matrix, want[key], err_msg=element)


def test_encodings_of_the_fixtures_cover_the_reader():
    seen = set()
    for name in FIXTURES:
        with h5py.File(DATA / f"{name}.h5ad", "r") as handle:
            handle.visititems(lambda _, element: seen.add(element.attrs.get("encoding-type")))
    assert {"dataframe", "dict", "array", "string-array", "categorical", "nullable-integer", "nullable-boolean",
            "nullable-string-array", "csr_matrix", "csc_matrix"} <= seen


def test_principal_components_match_sklearn():
    x = _expression()
    ours = principal_components(x, 4)
    reference = PCA(n_components=4, svd_solver="full").fit(x)
    projected = reference.transform(x)
    signs = np.sign(np.sum(ours * projected, axis=0))  # compare up to each component's sign
    np.testing.assert_allclose(ours, projected * signs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.var(axis=0, ddof=1), reference.explained_variance_, rtol=1e-10)
    # Deterministic sign: the largest-magnitude loading of every component is positive.
    loadings = np.linalg.lstsq(x - x.mean(0), ours, rcond=None)[0].T
    assert np.all(loadings[np.arange(4), np.abs(loadings).argmax(1)] > 0)


def test_h5ad_without_h5py_is_a_one_line_import_error(tmp_path, monkeypatch):
    (tmp_path / "cells.h5ad").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"cells.h5ad: reading .h5ad files needs the h5py package"):
        load_population(tmp_path / "cells.h5ad", time_key="time")


def test_standardize_any_form(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", X=rng.normal(loc=4.0, scale=3.0, size=(20, 2)), t=np.repeat([0, 1], 10))
    x = load_population(tmp_path / "d.npz", standardize=True)["x"]
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.std(0), 1.0, rtol=1e-5)


def test_numeric_time_and_obsm_round_trip_exactly(expected):
    want = _of(expected, "numeric")
    population = load_population(DATA / "numeric.h5ad", time_key="time")
    np.testing.assert_array_equal(population["x"], want["obsm_X_pca"])
    np.testing.assert_array_equal(population["t"], np.repeat([2, 0, 1, 3], N_CELLS // 4))
    assert population["t"].dtype == np.int32 and population["time_values"].dtype == np.float64
    np.testing.assert_array_equal(population["time_values"], [0.0, 1.5, 4.0, 8.25])
    assert "time_names" not in population and "particle" not in population and "_time" not in population


def test_integer_pair_ids_are_kept(expected):
    population = load_population(DATA / "numeric.h5ad", time_key="time", pair_key="clone")
    np.testing.assert_array_equal(population["particle"], _of(expected, "numeric")["obs_clone"])
    assert population["particle"].dtype == np.int64


def test_ordered_categories_give_the_time_order_not_the_alphabet(expected):
    want = _of(expected, "ordered")
    assert want["obs_day_categories"].tolist() == ["day2", "day4", "day10"] and bool(want["obs_day_ordered"])
    population = load_population(DATA / "ordered.h5ad", time_key="day")
    np.testing.assert_array_equal(population["t"], np.repeat([1, 0], N_CELLS // 2))
    # day4 has no cells: no snapshot, and the remaining times keep their category codes.
    np.testing.assert_array_equal(population["time_values"], [0.0, 2.0])
    assert population["time_names"].tolist() == ["day2", "day10"]
    np.testing.assert_array_equal(population["x"], want["obsm_X_pca"])


def test_string_pair_ids_are_numbered_in_sorted_order(expected):
    want = _of(expected, "ordered")
    clones = want["obs_clone_categories"][want["obs_clone_codes"]]
    population = load_population(DATA / "ordered.h5ad", time_key="day", pair_key="clone")
    np.testing.assert_array_equal(population["particle"], np.unique(clones, return_inverse=True)[1])
    np.testing.assert_array_equal(population["particle"], np.tile(np.arange(N_CELLS // 2), 2))


def test_unordered_numbers_as_text_are_ordered_as_numbers(expected):
    want = _of(expected, "ordered")
    days = want["obs_day_number_categories"][want["obs_day_number_codes"]]
    assert not bool(want["obs_day_number_ordered"]) and set(days) == {"10", "3", "21"}
    population = load_population(DATA / "ordered.h5ad", time_key="day_number")
    np.testing.assert_array_equal(population["time_values"], [3.0, 10.0, 21.0])
    np.testing.assert_array_equal(population["t"], np.searchsorted([3, 10, 21], days.astype(float)))


def test_nullable_integer_time_and_pair_ids(expected):
    want = _of(expected, "nullable")
    population = load_population(DATA / "nullable.h5ad", time_key="time", pair_key="clone")
    np.testing.assert_array_equal(population["time_values"], [0.0, 2.0, 5.0])
    np.testing.assert_array_equal(population["t"], np.searchsorted([0, 2, 5], want["obs_time"]))
    np.testing.assert_array_equal(population["particle"], want["obs_clone"])
    np.testing.assert_array_equal(population["x"], want["obsm_X_pca"].astype(np.float32))


def test_nullable_string_pair_ids(expected):
    barcodes = _of(expected, "nullable")["obs_barcode"]
    population = load_population(DATA / "nullable.h5ad", time_key="time", pair_key="barcode")
    np.testing.assert_array_equal(population["particle"], np.unique(barcodes, return_inverse=True)[1])


@pytest.mark.parametrize("fixture", ["numeric", "ordered"])  # dense X, csr_matrix X
def test_pca_of_x_matches_anndata_x_and_sklearn(fixture, expected):
    x = _of(expected, fixture)["X"].astype(np.float64)
    time_key = "time" if fixture == "numeric" else "day"
    population = load_population(DATA / f"{fixture}.h5ad", time_key=time_key, representation="X", n_pcs=3)
    np.testing.assert_array_equal(population["x"], principal_components(x, 3).astype(np.float32))
    projected = PCA(n_components=3, svd_solver="full").fit_transform(x)
    signs = np.sign(np.sum(population["x"] * projected, axis=0))
    # float32 output of a float64 PCA: one float32 rounding.
    np.testing.assert_allclose(population["x"], projected * signs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fixture", ["numeric", "nullable"])  # dense layer, csc_matrix layer
def test_pca_of_a_layer(fixture, expected):
    counts = _of(expected, fixture)["layer_counts"]
    population = load_population(DATA / f"{fixture}.h5ad", time_key="time", representation="layers/counts", n_pcs=2)
    np.testing.assert_array_equal(population["x"], principal_components(counts, 2).astype(np.float32))


def test_standardize_h5ad_over_all_cells():
    x = load_population(DATA / "numeric.h5ad", time_key="time", standardize=True)["x"]
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.std(0), 1.0, rtol=1e-5)


def test_test_path_of_h5ad_files(tmp_path):
    train, test = _copy("numeric", tmp_path, "train.h5ad"), _copy("numeric", tmp_path, "test.h5ad")
    population = load_population(train, test_path=test, time_key="time")
    assert population["test"].sum() == N_CELLS and population["time_values"].tolist() == [0.0, 1.5, 4.0, 8.25]
    with pytest.raises(ValueError, match=r"train.h5ad: with test_path, use an .obsm representation"):
        load_population(train, test_path=test, time_key="time", representation="X")


# --- one-line errors ----------------------------------------------------------------------------------

T = {"time_key": "time"}
NUMERIC_COLUMNS = r"\['time', 'clone', 'batch', 'is_root', 'bad_clone'\]"
BAD = {
    "no time column": ("numeric", dict(time_key="day"),
                       rf"cells.h5ad: no .obs column 'day' \(have {NUMERIC_COLUMNS}\)"),
    "no time_key": ("numeric", {"time_key": None},
                    rf"cells.h5ad: set time_key to the .obs column of the cells' times \(have {NUMERIC_COLUMNS}\)"),
    "no obsm": ("numeric", dict(T, representation="X_umap"),
                r"cells.h5ad: no .obsm 'X_umap' \(have \['X_pca'\]\); or representation 'X' or 'layers/<name>' "
                r"\(layers: \['counts'\]\) for a PCA"),
    "no layer": ("numeric", dict(T, representation="layers/spliced"),
                 r"cells.h5ad: no layer 'spliced' \(have \['counts'\]\)"),
    "no layers at all": ("ordered", dict(time_key="day", representation="layers/counts"),
                         r"cells.h5ad: no layer 'counts' \(have \[\]\)"),
    "nan coordinates": ("nullable", dict(T, representation="X_bad"),
                        r"cells.h5ad: .obsm 'X_bad' has NaN or infinite values in 1 cell"),
    "missing float times": ("nullable", dict(time_key="time_nan"),
                            r"cells.h5ad: .obs column 'time_nan' has 2 missing value\(s\)"),
    "missing nullable integers": ("nullable", dict(time_key="time_na"),
                                  r"cells.h5ad: .obs column 'time_na' has 1 missing value\(s\)"),
    "missing categories": ("ordered", dict(time_key="day_na"),
                           r"cells.h5ad: .obs column 'day_na' has 1 missing value\(s\)"),
    "one time point": ("nullable", dict(time_key="const"),
                       r"cells.h5ad: .obs column 'const' has fewer than two time points \(\['3.0'\]\)"),
    "unordered strings": ("ordered", dict(time_key="stage"),
                          r"cells.h5ad: .obs column 'stage' holds non-numeric values \['day0', 'day8'\] without an "
                          r"order"),
    "string time": ("nullable", dict(time_key="barcode"), r"cells.h5ad: .obs column 'barcode' holds non-numeric"),
    "boolean time": ("numeric", dict(time_key="is_root"), r"cells.h5ad: .obs column 'is_root' is boolean"),
    "nullable boolean time": ("nullable", dict(time_key="flag"), r"cells.h5ad: .obs column 'flag' has 1 missing"),
    "n_pcs over genes": ("numeric", dict(T, representation="X", n_pcs=13),
                         r"cells.h5ad: n_pcs = 13 must be an integer between 1 and min\(cells, genes\) of .X, which "
                         r"has 40 cells and 12 genes"),
    "n_pcs not an integer": ("nullable", dict(T, representation="layers/counts", n_pcs=1.5),
                             r"cells.h5ad: n_pcs = 1.5 must be an integer between 1 and min\(cells, genes\) of layer "
                             r"'counts'"),
    "empty X": ("nullable", dict(T, representation="X"),
                r"cells.h5ad: .X is empty; use an .obsm representation \(have \['X_bad', 'X_pca', 'meta'\]\)"),
    "no pair column": ("numeric", dict(T, pair_key="lineage"),
                       rf"cells.h5ad: no .obs column 'lineage' for pair_key \(have {NUMERIC_COLUMNS}\)"),
    "repeated pair id": ("numeric", dict(T, pair_key="bad_clone"),
                         r"cells.h5ad: particle id 0 appears twice at time 0"),
    "dataframe in obsm": ("nullable", dict(T, representation="meta"),
                          r"cells.h5ad: element /obsm/meta has encoding 'dataframe' \(version '0.2.0'\), which is not "
                          r"supported there \(supported: array 0.2.0, csr_matrix 0.1.0, csc_matrix 0.1.0\)"),
}


@pytest.mark.parametrize(("fixture", "settings", "message"), BAD.values(), ids=BAD.keys())
def test_bad_keys_give_one_line(tmp_path, fixture, settings, message):
    path = _copy(fixture, tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        load_population(path, **settings)
    assert "\n" not in str(info.value)


def _set_attr(element, name, value):
    def edit(handle):
        handle[element].attrs[name] = value
    return edit


def _delete(element):
    def edit(handle):
        del handle[element]
    return edit


def _replace_dataset(element, data):
    def edit(handle):
        attrs = dict(handle[element].attrs)
        del handle[element]
        handle[element] = data
        handle[element].attrs.update(attrs)
    return edit


EDITED = {
    "unknown encoding": ("numeric", _set_attr("obs/time", "encoding-type", "awkward-array"), T,
                         r"cells.h5ad: element /obs/time has encoding 'awkward-array' \(version '0.2.0'\), which is "
                         r"not supported there"),
    "unknown version": ("numeric", _set_attr("obsm/X_pca", "encoding-version", "0.3.0"), T,
                        r"cells.h5ad: element /obsm/X_pca has encoding 'array' \(version '0.3.0'\), which is not "
                        r"supported there"),
    "no encoding on an element": ("numeric", lambda h: h["obs/time"].attrs.__delitem__("encoding-type"), T,
                                  r"cells.h5ad: element /obs/time has no encoding-type attribute"),
    "not an anndata root": ("numeric", _set_attr("/", "encoding-type", "mudata"), T,
                            r"cells.h5ad: element / has encoding 'mudata' \(version '0.1.0'\)"),
    "no obs": ("numeric", _delete("obs"), T, r"cells.h5ad: element / \(anndata\) has no element 'obs'"),
    "obs not a dataframe": ("numeric", _set_attr("obs", "encoding-type", "dict"), T,
                            r"cells.h5ad: element /obs has encoding 'dict' \(version '0.2.0'\)"),
    "listed column missing": ("numeric", _delete("obs/time"), T,
                              r"cells.h5ad: element /obs \(dataframe\) has no element 'time'"),
    "categorical without codes": ("ordered", _delete("obs/day/codes"), dict(time_key="day"),
                                  r"cells.h5ad: element /obs/day \(categorical\) has no dataset 'codes'"),
    "codes out of range": ("ordered", _replace_dataset("obs/day/codes", np.full(N_CELLS, 7, np.int8)),
                           dict(time_key="day"),
                           r"cells.h5ad: element /obs/day \(categorical\) has codes outside -1..2"),
    "short mask": ("nullable", _replace_dataset("obs/time/mask", np.zeros(3, bool)), T,
                   r"cells.h5ad: element /obs/time \(nullable-integer\) has a mask of dtype bool, shape \(3,\)"),
    "csr indptr": ("ordered", _replace_dataset("X/indptr", np.arange(N_CELLS + 1, dtype=np.int32)),
                   dict(time_key="day", representation="X"), r"cells.h5ad: element /X \(csr_matrix\) is inconsistent"),
    "csc indices": ("nullable", lambda h: h["layers/counts/indices"].__setitem__(0, 99),
                    dict(T, representation="layers/counts"),
                    r"cells.h5ad: element /layers/counts \(csc_matrix\) is inconsistent"),
    "sparse without shape": ("ordered", lambda h: h["X"].attrs.__delitem__("shape"),
                             dict(time_key="day", representation="X"),
                             r"cells.h5ad: element /X \(csr_matrix\) has shape attribute \(\), not \[rows, columns\]"),
    "strings as X": ("numeric", _replace_dataset("X", np.full((N_CELLS, N_GENES), b"a")),
                     dict(T, representation="X", n_pcs=2), r"cells.h5ad: .X is not a numeric \[cells, d\] array"),
    "cells disagree": ("numeric", _replace_dataset("obsm/X_pca", np.ones((N_CELLS - 1, 2), np.float32)), T,
                       r"cells.h5ad: expected points \[n, d\] and time labels \[n\], got shapes \(39, 2\) and \(40,\)"),
}


@pytest.mark.parametrize(("fixture", "edit", "settings", "message"), EDITED.values(), ids=EDITED.keys())
def test_damaged_files_and_unsupported_encodings_give_one_line(tmp_path, fixture, edit, settings, message):
    path = _copy(fixture, tmp_path)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    with pytest.raises(ValueError, match=message) as info:
        load_population(path, **settings)
    assert "\n" not in str(info.value)


def test_not_hdf5_is_one_line(tmp_path):
    (tmp_path / "cells.h5ad").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"cells.h5ad: not a readable .h5ad file \(") as info:
        load_population(tmp_path / "cells.h5ad", time_key="time")
    assert "\n" not in str(info.value)


def test_old_files_without_encoding_attributes_are_refused(tmp_path):
    """anndata < 0.8 wrote no encoding attributes (and .obs as one compound dataset)."""
    path = tmp_path / "cells.h5ad"
    with h5py.File(path, "w") as handle:
        handle["obs"] = np.array([(b"c0", 0.0), (b"c1", 1.0)], dtype=[("index", "S2"), ("time", "f8")])
        handle["X"] = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"cells.h5ad: no encoding-type attribute on the root group: an .h5ad file "
                                         r"written by anndata < 0.8 .*re-save it with anndata >= 0.8") as info:
        load_population(path, time_key="time")
    assert "\n" not in str(info.value)


def _hand_made(path, column, **obsm):
    """A minimal AnnData file written with h5py alone: .obs with one column, and .obsm."""
    def encode(element, kind, version):
        element.attrs["encoding-type"], element.attrs["encoding-version"] = kind, version

    with h5py.File(path, "w") as handle:
        encode(handle, "anndata", "0.1.0")
        obs = handle.create_group("obs")
        encode(obs, "dataframe", "0.2.0")
        obs.attrs["_index"], obs.attrs["column-order"] = "_index", ["time"]
        column(obs)
        n_cells = len(next(iter(obsm.values())))
        obs["_index"] = np.array([f"c{i}" for i in range(n_cells)], dtype=h5py.string_dtype())
        encode(obs["_index"], "string-array", "0.2.0")
        group = handle.create_group("obsm")
        encode(group, "dict", "0.1.0")
        for key, value in obsm.items():
            group[key] = value
            encode(group[key], "array", "0.2.0")


def test_hand_made_string_array_column_of_numbers(tmp_path):
    days = np.array(["10", "3", "10", "3", "21", "21"], dtype=object)

    def column(obs):
        obs["time"] = days.astype(h5py.string_dtype())
        obs["time"].attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
    _hand_made(tmp_path / "cells.h5ad", column, X_pca=np.arange(12.0).reshape(6, 2))
    population = load_population(tmp_path / "cells.h5ad", time_key="time")
    np.testing.assert_array_equal(population["time_values"], [3.0, 10.0, 21.0])
    np.testing.assert_array_equal(population["t"], [1, 0, 1, 0, 2, 2])
    np.testing.assert_array_equal(population["x"], np.arange(12.0).reshape(6, 2))


def test_hand_made_nullable_string_times_with_missing_values(tmp_path):
    def column(obs):
        group = obs.create_group("time")
        group.attrs.update({"encoding-type": "nullable-string-array", "encoding-version": "0.1.0"})
        group["values"] = np.array(["1", "", "2", "1"], dtype=object).astype(h5py.string_dtype())
        group["values"].attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
        group["mask"] = np.array([False, True, False, False])
        group["mask"].attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    _hand_made(tmp_path / "cells.h5ad", column, X_pca=np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"cells.h5ad: .obs column 'time' has 1 missing value\(s\)"):
        load_population(tmp_path / "cells.h5ad", time_key="time")


# --- writing energies out ----------------------------------------------------------------------------------

def _energies(n=30, d=3, seed=0):
    """Cells as the evaluate job writes them: obs time, potential, split; obsm X_input, drift."""
    rng = np.random.default_rng(seed)
    obs = {"time": np.repeat([0.0, 1.5, 4.0], -(-n // 3))[:n], "potential": rng.normal(size=n),
           "split": np.resize(["train", "test"], n)}
    obsm = {"X_input": rng.normal(size=(n, d)).astype(np.float32), "drift": rng.normal(size=(n, d))}
    return obs, obsm


def _attributes(element) -> dict:
    """An element's attributes, text as str and arrays as lists (h5py returns str, bytes or arrays)."""
    def plain(value):
        if isinstance(value, np.ndarray):
            return [plain(v) for v in value.tolist()]
        return value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value
    return {key: plain(value) for key, value in element.attrs.items()}


def test_energies_round_trip_through_our_reader(tmp_path):
    obs, obsm = _energies()
    path = tmp_path / "energies.h5ad"
    write_energy_h5ad(path, x=obsm["X_input"], obs=obs, obsm=obsm, uns={"method": "jkonet-star-potential",
                                                                        "tau": 1.0, "seed": 0})
    for key in ("X_input", "drift"):
        population = load_population(path, time_key="time", representation=key)
        np.testing.assert_array_equal(population["x"], obsm[key].astype(np.float32))
        np.testing.assert_array_equal(population["time_values"], [0.0, 1.5, 4.0])
        np.testing.assert_array_equal(population["t"], np.repeat([0, 1, 2], 10))
    with h5py.File(path, "r") as handle:
        columns = _H5adObs(path, handle)
        assert columns.columns == ["time", "potential", "split"]
        np.testing.assert_array_equal(columns["potential"].to_numpy(), obs["potential"])
        assert columns["split"].tolist() == obs["split"].tolist()
        np.testing.assert_array_equal(_h5ad_matrix(path, handle["X"]), obsm["X_input"])
        assert handle["obsm/drift"].dtype == np.float64 and handle["X"].dtype == np.float32
        assert handle["uns/method"].asstr()[()] == "jkonet-star-potential" and handle["uns/tau"][()] == 1.0
    # The PCA representation of .X works on the writer's files as on anndata's.
    np.testing.assert_array_equal(load_population(path, time_key="time", representation="X", n_pcs=2)["x"],
                                  principal_components(obsm["X_input"], 2).astype(np.float32))


def test_ordered_categorical_obs_round_trip(tmp_path):
    days = pd.Categorical(np.repeat(["day10", "day2", "day4"], 4), categories=["day2", "day4", "day10"], ordered=True)
    path = tmp_path / "days.h5ad"
    write_energy_h5ad(path, obs={"day": days, "clone": np.tile(np.arange(4), 3)}, obsm={"X_pca": np.eye(12)[:, :3]})
    population = load_population(path, time_key="day", pair_key="clone")
    np.testing.assert_array_equal(population["t"], np.repeat([2, 0, 1], 4))
    assert population["time_names"].tolist() == ["day2", "day4", "day10"]
    np.testing.assert_array_equal(population["particle"], np.tile(np.arange(4), 3))


def test_writer_layout_matches_anndata(tmp_path):
    """The elements and their attributes are those anndata 0.13.4 wrote for the fixtures (numeric.h5ad: with X;
    nullable.h5ad: without; ordered.h5ad: an ordered categorical), except the index, which is written as a
    string-array (every anndata >= 0.8 reads it) where anndata 0.12+ writes a nullable-string-array."""
    obs, obsm = _energies(n=40)
    day = pd.Categorical(np.resize(["day2", "day10"], 40), categories=["day2", "day4", "day10"], ordered=True)
    ours = {"numeric": tmp_path / "x.h5ad", "nullable": tmp_path / "no_x.h5ad"}
    write_energy_h5ad(ours["numeric"], x=np.zeros((40, 12)), obs={**obs, "day": day}, obsm=obsm)
    write_energy_h5ad(ours["nullable"], obs=obs, obsm=obsm)
    for fixture, path in ours.items():
        with h5py.File(path, "r") as mine, h5py.File(DATA / f"{fixture}.h5ad", "r") as theirs:
            assert sorted(mine) == sorted(theirs), fixture  # X, layers, obs, obsm, obsp, uns, var, varm, varp
            for name in ["", "layers", "obsm", "obsp", "uns", "varm", "varp", *(["X"] if "X" in theirs else [])]:
                element = mine[name] if name else mine
                assert _attributes(element) == _attributes(theirs[name] if name else theirs), (fixture, name)
            for frame in ("obs", "var"):
                a, b = _attributes(mine[frame]), _attributes(theirs[frame])
                assert a.keys() == b.keys() and a["_index"] == b["_index"] == "_index"
                assert {k: a[k] for k in ("encoding-type", "encoding-version")} == {
                    k: b[k] for k in ("encoding-type", "encoding-version")}
                # column-order: variable-length strings, or (no column) an empty float array, as anndata writes
                assert mine[frame].attrs["column-order"].dtype.kind == theirs[frame].attrs["column-order"].dtype.kind
                if frame == "obs" or "X" in mine:  # (the fixture without X has genes in a layer)
                    assert len(mine[f"{frame}/_index"]) == len(theirs[f"{frame}/_index/values"])
                assert _attributes(mine[f"{frame}/_index"]) == _attributes(theirs[f"{frame}/_index/values"])
            assert _attributes(mine["var"])["column-order"] == [] and _attributes(mine["obs"])["column-order"][:3] == [
                "time", "potential", "split"]
            if fixture == "numeric":  # its time is a float column: array 0.2.0
                assert _attributes(mine["obs/time"]) == _attributes(theirs["obs/time"])
            assert _attributes(mine["obsm/X_input"]) == _attributes(theirs["obsm/X_pca"])
        with h5py.File(path, "r") as mine, h5py.File(DATA / "ordered.h5ad", "r") as theirs:
            # text columns: string-array (anndata writes strings as categoricals of string-array categories)
            assert _attributes(mine["obs/split"]) == _attributes(theirs["obs/clone/categories"])
            if "day" in mine["obs"]:
                assert _attributes(mine["obs/day"]) == _attributes(theirs["obs/day"])  # categorical, ordered
                for part in ("codes", "categories"):
                    assert _attributes(mine[f"obs/day/{part}"]) == _attributes(theirs[f"obs/day/{part}"])
                    assert mine[f"obs/day/{part}"].dtype == theirs[f"obs/day/{part}"].dtype, part


@pytest.mark.parametrize(("change", "message"), [
    (lambda obs, obsm: obs.update(potential=np.zeros(29)), r"one row per cell everywhere"),
    (lambda obs, obsm: obsm.update(drift=np.zeros(30)), r"obsm 'drift' must be a numeric \[cells, k\] array"),
    (lambda obs, obsm: obs.update({"a/b": np.zeros(30)}), r"bad obs/obsm name 'a/b'"),
    (lambda obs, obsm: obs.update(potential=np.zeros((30, 2))), r"obs column 'potential' must be one value"),
], ids=["length", "obsm-1d", "slash", "obs-2d"])
def test_bad_energy_arrays_are_refused_naming_the_file(tmp_path, change, message):
    obs, obsm = _energies()
    change(obs, obsm)
    for write in (write_energy_h5ad, write_energy_csv):
        path = tmp_path / f"energies.{'h5ad' if write is write_energy_h5ad else 'csv'}"
        with pytest.raises(ValueError, match=rf"energies\.(h5ad|csv): {message}"):
            write(path, obs=obs, obsm=obsm)
        assert not path.exists() and not list(tmp_path.iterdir())


def test_energy_csv_is_tidy(tmp_path):
    obs, obsm = _energies()
    obs["day"] = pd.Categorical(np.repeat(["d0", "d1", "d2"], 10), ordered=True)
    write_energy_csv(tmp_path / "energies.csv", obs=obs, obsm=obsm)
    table = pd.read_csv(tmp_path / "energies.csv")
    assert list(table.columns) == ["time", "potential", "split", "day", "X_input_0", "X_input_1", "X_input_2",
                                   "drift_0", "drift_1", "drift_2"]
    assert len(table) == 30 and table["split"].tolist() == obs["split"].tolist()
    assert table["day"].tolist() == list(obs["day"])
    np.testing.assert_array_equal(table["potential"].to_numpy(), obs["potential"])  # repr round-trips floats
    np.testing.assert_array_equal(table[["drift_0", "drift_1", "drift_2"]].to_numpy(), obsm["drift"])
    np.testing.assert_array_equal(table[["X_input_0", "X_input_1", "X_input_2"]].to_numpy(np.float32),
                                  obsm["X_input"])


# --- the read job's summary --------------------------------------------------------------------------------

def test_read_job_writes_real_times_names_and_pair_ids(tmp_path):
    """Float times stay floats (1.5 is not truncated), an ordered categorical's names are kept, pair_key and
    standardize reach load_population."""
    source = {"location": str(DATA / "numeric.h5ad"), "time_column": "t", "n_pcs": 5, "particle_column": "particle",
              "test_location": None, "time_key": "time", "representation": "X_pca", "standardize": True,
              "pair_key": "clone"}
    jobs.read_dataset(dataset="cells", source=source, population=tmp_path / "p.npz", summary=tmp_path / "p.json")
    summary = __import__("json").loads((tmp_path / "p.json").read_text())
    assert summary["time_values"] == [0.0, 1.5, 4.0, 8.25] and summary["particle_ids"] is True
    assert "time_names" not in summary
    with np.load(tmp_path / "p.npz") as saved:
        want = load_population(DATA / "numeric.h5ad", time_key="time", pair_key="clone", standardize=True)
        assert sorted(saved.files) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(saved[key], want[key])
        np.testing.assert_allclose(saved["x"].std(0), 1.0, rtol=1e-5)
    source.update(location=str(DATA / "ordered.h5ad"), time_key="day", pair_key=None, standardize=False)
    jobs.read_dataset(dataset="cells", source=source, population=tmp_path / "o.npz", summary=tmp_path / "o.json")
    summary = __import__("json").loads((tmp_path / "o.json").read_text())
    assert summary["time_values"] == [0, 2] and summary["time_names"] == ["day2", "day10"]
    assert np.load(tmp_path / "o.npz")["time_names"].tolist() == ["day2", "day10"]


# --- the embryoid-body converter ---------------------------------------------------------------------------

def _eb_converter():
    import importlib.util

    spec = importlib.util.spec_from_file_location("eb_to_h5ad", ROOT / "scripts" / "eb_to_h5ad.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not EB_SHARED.is_dir(), reason="shared embryoid-body data (/work/shared/real-data) not present")
def test_eb_converter_gives_the_directory_population(tmp_path):
    out = _eb_converter().convert(EB_SHARED, tmp_path / "eb.h5ad")
    ours = load_population(out, time_key="day", representation="X_pca")
    theirs = load_population(EB_SHARED)
    assert sorted(ours) == sorted([*theirs, "time_names"])
    np.testing.assert_array_equal(ours["x"], theirs["x"])
    np.testing.assert_array_equal(ours["t"], theirs["t"])
    np.testing.assert_array_equal(ours["time_values"], theirs["time_values"])  # codes 0..4 = labels 0..4
    assert ours["time_names"].tolist() == ["day0-3", "day6-9", "day12-15", "day18-21", "day24-27"]
    with h5py.File(out, "r") as handle:
        np.testing.assert_array_equal(handle["obsm/X_pca"][()], np.load(EB_SHARED / "data.npy"))
        assert bool(handle["obs/day"].attrs["ordered"])


def test_eb_converter_refuses_unknown_labels(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros((4, 2)))
    np.save(tmp_path / "sample_labels.npy", np.array([0, 1, 5, 5]))
    with pytest.raises(ValueError, match=r"sample_labels.npy: labels must be integers 0..4 .*got \[0, 1, 5\]"):
        _eb_converter().convert(tmp_path, tmp_path / "eb.h5ad")

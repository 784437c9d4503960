"""Loading user and RNA population files: every accepted form, and one-line errors for bad files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jkonetstar import pipeline
from jkonetstar.data import load_population, standardise_pcs

SHARED_RNA = Path(__file__).resolve().parents[2] / "shared" / "real-data" / "eb_rna_pca5"


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(30, 3)), np.repeat([10, 20, 40], 10)


def test_npz_relabels_times_in_order(tmp_path, points):
    x, t = points
    np.savez(tmp_path / "d.npz", X=x, t=t[::-1])
    population = load_population(tmp_path / "d.npz")
    np.testing.assert_array_equal(population["t"], np.repeat([2, 1, 0], 10))
    np.testing.assert_array_equal(population["time_values"], [10, 20, 40])
    np.testing.assert_allclose(population["x"], x.astype(np.float32))


def test_csv_with_time_column(tmp_path, points):
    x, t = points
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "day": t}).to_csv(tmp_path / "d.csv", index=False)
    population = load_population(tmp_path / "d.csv", time_column="day")
    assert population["x"].shape == (30, 2)
    np.testing.assert_array_equal(np.bincount(population["t"]), [10, 10, 10])


def test_trajectorynet_form_standardises_all_pcs_then_keeps_five(tmp_path):
    rng = np.random.default_rng(1)
    pcs = rng.normal(loc=3.0, scale=[5.0] * 7 + [0.1] * 3, size=(40, 10))
    labels = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "eb_velocity_v5.npz", pcs=pcs, sample_labels=labels)
    population = load_population(tmp_path / "eb_velocity_v5.npz")
    expected = (pcs - pcs.mean(0)) / pcs.std(0)
    np.testing.assert_allclose(population["x"], expected[:, :5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(population["x"].std(0), 1.0, rtol=1e-5)


def test_preprocessed_directory_form(tmp_path):
    rng = np.random.default_rng(2)
    x = standardise_pcs(rng.normal(size=(20, 8)))
    np.save(tmp_path / "data.npy", x)
    np.save(tmp_path / "sample_labels.npy", np.repeat([0, 1], 10))
    assert load_population(tmp_path)["x"].shape == (20, 5)


@pytest.mark.skipif(not SHARED_RNA.is_dir(), reason=f"shared RNA data not present at {SHARED_RNA}")
def test_shared_embryoid_body_data():
    population = load_population(SHARED_RNA)
    assert population["x"].shape == (16819, 5)
    np.testing.assert_array_equal(np.bincount(population["t"]), [2381, 4163, 3278, 3665, 3332])
    np.testing.assert_allclose(population["x"].std(0), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_text("not a zip"), "not a readable .npz"),
        (lambda p: np.savez(p, Y=np.zeros((4, 2)), t=np.arange(4)), "expected arrays X"),
        (lambda p: np.savez(p, X=np.zeros((4, 2)), t=np.zeros(4, int)), "at least two time points"),
        (lambda p: np.savez(p, X=np.full((4, 2), np.nan), t=np.array([0, 0, 1, 1])), "finite"),
        (lambda p: np.savez(p, X=np.zeros((4, 2)), t=np.array([0, 0.5, 1, 1])), "integers"),
        (lambda p: np.savez(p, X=np.zeros((4, 2)), t=np.arange(3)), "shapes"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ValueError, match=message) as info:
        load_population(path)
    assert "bad.npz" in str(info.value)


def test_csv_without_time_column(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ValueError, match="no time column 't'"):
        load_population(tmp_path / "d.csv")


def test_npz_time_value_gives_the_snapshot_times(tmp_path):
    """TIGON's form: integer labels t plus time_value, the real time of each label (days; 8 h is 1/3)."""
    x = np.arange(12, dtype=float).reshape(6, 2)
    np.savez(tmp_path / "emt.npz", X=x, t=np.array([0, 0, 1, 1, 4, 4]), time_value=np.array([0.0, 1 / 3, 7.0]))
    population = load_population(tmp_path / "emt.npz")
    np.testing.assert_array_equal(population["t"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(population["time_values"], [0.0, 1 / 3, 7.0])
    # unit: the median gap (1/3 + 20/3) / 2 = 3.5 days
    np.testing.assert_allclose(pipeline.time_scales(population["time_values"]).times, [0.0, 2 / 21, 2.0])
    np.savez(tmp_path / "bad.npz", X=x, t=np.array([0, 0, 1, 1, 4, 4]), time_value=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"bad\.npz: time_value must hold one finite, increasing time per time label"):
        load_population(tmp_path / "bad.npz")

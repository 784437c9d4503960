"""Tests of jkonetstar.io: atomic writes and load errors that name the file."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from jkonetstar.io import atomic_path, load_json, load_npz, save_json, save_npz


def test_npz_round_trip_leaves_only_the_target(tmp_path):
    path = tmp_path / "sub" / "arrays.npz"  # the parent is created
    arrays = dict(x=np.arange(6, dtype=np.float32).reshape(3, 2), t=np.array([0, 1, 2]), name=np.asarray("sphere"))
    save_npz(path, **arrays)
    assert sorted(p.name for p in path.parent.iterdir()) == ["arrays.npz"]
    loaded = load_npz(path, required=("x", "t"))
    assert sorted(loaded) == ["name", "t", "x"]
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


def test_json_round_trip_keeps_nan_and_leaves_only_the_target(tmp_path):
    path = tmp_path / "metrics.json"
    save_json(path, {"w1": math.nan, "epochs": [1, 2]})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    loaded = load_json(path)
    assert math.isnan(loaded["w1"]) and loaded["epochs"] == [1, 2]


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "a.npz"
    save_npz(path, x=np.zeros(2))
    save_npz(path, x=np.ones(3))
    np.testing.assert_array_equal(load_npz(path)["x"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_failing_writer_leaves_no_target_and_no_temporary_file(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_path(path) as tmp:
            tmp.write_text("{half a record")
            raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_failing_writer_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.json"
    save_json(path, {"version": 1})
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_path(path) as tmp:
            tmp.write_text('{"version": 2}')
            raise RuntimeError("writer crashed")
    assert load_json(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failing_save_npz_leaves_nothing(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError):
        save_npz(path, ragged=[[1, 2], [3]])  # np.asarray refuses ragged lists before anything is written
    assert list(tmp_path.iterdir()) == []


def test_temporary_file_is_hidden_beside_the_target(tmp_path):
    path = tmp_path / "x.npz"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.npz.") and tmp.suffix == ".npz"
        assert not path.exists()
        tmp.write_bytes(b"data")
    assert path.read_bytes() == b"data" and not tmp.exists()


def test_save_npz_writes_no_pickles(tmp_path):
    # The module promises pickle-free files: an object array must be refused when saving, not written
    # as a pickle that load_npz (allow_pickle=False) later cannot read.
    path = tmp_path / "objects.npz"
    with pytest.raises((ValueError, TypeError)):
        save_npz(path, settings={"a": 1})
    assert not path.exists()


def test_load_npz_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(ValueError, match=re.escape(f"{path}: file not found")):
        load_npz(path)


@pytest.mark.parametrize("content", [b"", b"not a zip archive", b"PK\x03\x04 truncated"])
def test_load_npz_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npz file")):
        load_npz(path)


def test_load_npz_truncated_archive_names_it(tmp_path):
    path = tmp_path / "cut.npz"
    save_npz(path, x=np.arange(1000.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npz file")):
        load_npz(path)


def test_load_npz_refuses_pickles(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npz file")):
        load_npz(path)


def test_load_npz_missing_key_names_file_and_key(tmp_path):
    path = tmp_path / "partial.npz"
    save_npz(path, x=np.zeros(2))
    with pytest.raises(ValueError, match=re.escape(f"{path}: missing array 'weight' (found ['x'])")):
        load_npz(path, required=("x", "weight"))


def test_load_json_missing_and_corrupt_files_name_them(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match=re.escape(f"{missing}: file not found")):
        load_json(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"w1": 0.1,')
    with pytest.raises(ValueError, match=re.escape(f"{corrupt}: not valid JSON")):
        load_json(corrupt)
    assert corrupt.read_text() == '{"w1": 0.1,'  # the file itself is left alone

"""The leave-one-timepoint-out protocol (pipeline.leave_one_out, jobs.couple with split holdout, rule
rna_protocols): the held-out snapshot never reaches the couplings, densities or training, the gap is one step
of its whole length, and the score is exact W1 (POT emd2, Euclidean cost) against the full held-out snapshot."""

from __future__ import annotations

import math
import re

import numpy as np
import ot
import pandas as pd
import pytest

from jkonetstar import density, jobs, models, pipeline
from jkonetstar.io import load_json, load_npz, save_npz
from jkonetstar.training import TrainingData


def _population(sizes=(30, 41, 35, 28, 33), seed=0):
    """Independent snapshots whose coordinates tell their snapshot: snapshot k lies around (3k, -k)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal((3.0 * k, -1.0 * k), 0.5, (n, 2)) for k, n in enumerate(sizes)])
    t = np.repeat(np.arange(len(sizes)), sizes)
    return {"x": x.astype(np.float32), "t": t.astype(np.int32), "time_values": np.arange(len(sizes), dtype=float)}


def _rows_of(points, snapshot):
    """Whether each row of ``points`` is a row of ``snapshot`` (exact coordinates)."""
    keys = {tuple(row) for row in np.asarray(snapshot, np.float32)}
    return np.array([tuple(row) in keys for row in np.asarray(points, np.float32)])


def test_leave_one_out_keeps_the_other_snapshots_and_tests_the_full_pair():
    population = _population()
    train, test = pipeline.leave_one_out(population, 2)
    assert np.unique(train["t"]).tolist() == [0, 1, 3, 4]
    np.testing.assert_array_equal(train["x"], population["x"][population["t"] != 2])
    np.testing.assert_array_equal(train["time_values"], population["time_values"])  # full times: the gap's length
    assert np.unique(test["t"]).tolist() == [1, 2]
    for label in (1, 2):  # the full snapshots, every cell
        np.testing.assert_array_equal(test["x"][test["t"] == label], population["x"][population["t"] == label])


@pytest.mark.parametrize("holdout", [0, 4, 7])
def test_only_inner_snapshots_can_be_left_out(holdout):
    message = "must be an inner one of the labels [0, 1, 2, 3, 4], one of [1, 2, 3]"
    with pytest.raises(ValueError, match=re.escape(message)):
        pipeline.leave_one_out(_population(), holdout)


def test_pre_split_data_are_refused():
    population = {**_population(), "test": np.zeros(167, bool)}
    with pytest.raises(ValueError, match="give the data unsplit"):
        pipeline.leave_one_out(population, 1)


def test_the_held_out_snapshot_never_reaches_couplings_densities_or_training(tmp_path):
    population = _population()
    save_npz(tmp_path / "population.npz", **population)
    out = {name: tmp_path / f"{name}.npz" for name in ("train", "test", "train_population", "mixtures")}
    jobs.couple(population=tmp_path / "population.npz", seed=0, split={"holdout": 2},
                couplings={"method": "exact", "block_size": None}, density={"n_components": 2}, pairing=None,
                summary=tmp_path / "couplings.json", **out)
    held_out = population["x"][population["t"] == 2]
    data = TrainingData.load(out["train"])
    assert not _rows_of(data.source, held_out).any() and not _rows_of(data.target, held_out).any()
    assert sorted(set(np.asarray(data.time).tolist())) == [1, 3, 4]  # targets: 1, then 3 over the gap, 4
    np.testing.assert_array_equal(np.unique(np.asarray(data.tau_scale)[np.asarray(data.time) == 3]), [2.0])
    np.testing.assert_array_equal(np.unique(np.asarray(data.tau_scale)[np.asarray(data.time) != 3]), [1.0])
    np.testing.assert_array_equal(np.unique(np.asarray(data.time_input)[np.asarray(data.time) == 3]), [3.0])
    trained_on = load_npz(out["train_population"])
    assert 2 not in trained_on["t"] and not _rows_of(trained_on["x"], held_out).any()
    mixtures = density.mixtures_from_arrays(load_npz(out["mixtures"]))
    assert sorted(mixtures) == [0, 1, 3, 4]
    test = load_npz(out["test"])
    assert np.unique(test["t"]).tolist() == [1, 2] and len(test["x"]) == 41 + 35
    summary = load_json(tmp_path / "couplings.json")
    assert summary["holdout"] == 2 and summary["split_by"] == "given"
    # the no-motion reference: W1 between the full snapshots 1 and 2
    direct = ot.emd2([], [], ot.dist(population["x"][population["t"] == 1].astype(np.float64),
                                     held_out.astype(np.float64), metric="euclidean"))
    assert summary["no_motion_w1_mean"] == pytest.approx(direct, rel=1e-9)


def test_the_score_is_pot_emd2_from_the_full_previous_snapshot_to_the_full_held_out_one():
    population = _population(sizes=(20, 26, 23, 30, 21))
    train, test = pipeline.leave_one_out(population, 1)
    prepared = pipeline.prepare_training_data(train, 0, test_population=test, n_components=2, block_size=None)
    spec = models.get_solver("jkonet-star-linear-potential")
    params, _ = models.fit_linear(spec, prepared.train, feature_options={"degree": 2, "rbf_per_dim": 0})
    times = population["time_values"]
    scores = pipeline.evaluate(params, spec, prepared.x_test, prepared.t_test, 0, time_values=times)
    assert len(scores["w1_per_step"]) == 1
    labels, observed, predicted, _ = pipeline.one_step(params, spec, prepared.x_test, prepared.t_test, 0,
                                                       time_values=times)
    np.testing.assert_array_equal(observed[0], population["x"][population["t"] == 0])  # the full snapshot 0 ...
    expected = ot.emd2([], [], ot.dist(np.asarray(predicted[0], np.float64),  # ... against the full snapshot 1
                                       population["x"][population["t"] == 1].astype(np.float64), metric="euclidean"))
    assert scores["w1_mean"] == pytest.approx(expected, rel=1e-7)


def test_protocol_rows_average_each_seed_then_spread_over_seeds():
    runs = [dict(solver="jkonet-star-potential", seed=0, w1_per_step=[1.0]),
            dict(solver="jkonet-star-potential", seed=0, w1_per_step=[2.0]),
            dict(solver="jkonet-star-potential", seed=1, w1_per_step=[4.0]),
            dict(solver="jkonet-star-potential", seed=1, w1_per_step=[6.0])]
    (row,) = jobs.protocol_rows(runs, "leave-one-out", {"jkonet-star-potential": "here"})
    # seed means 1.5 and 5.0: mean 3.25, population std 1.75
    assert (row["mean"], row["std"], row["n_seeds"]) == (3.25, 1.75, 2)
    (single,) = jobs.protocol_rows(runs[:2], "leave-one-out", {"jkonet-star-potential": "here"})
    assert single["mean"] == 1.5 and math.isnan(single["std"])


def test_protocols_table_sets_reruns_beside_the_published_rows(tmp_path):
    def metrics(name, solver, seed, steps):
        path = tmp_path / f"{name}.json"
        path.write_text(pd.Series(dict(solver=solver, seed=seed, w1_per_step=steps)).to_json())
        return path

    one_step = [metrics(f"o{s}", "jkonet-star-time-potential", s, [0.6, 0.7, 0.5, 0.6]) for s in range(2)]
    loo = [metrics(f"l{k}{s}", "jkonet-star-time-potential", s, [0.7 + 0.1 * k]) for k in range(3) for s in range(2)]
    jobs.rna_protocols(one_step=one_step, leave_one_out=loo,
                       protocol={"one-step": {"jkonet-star-time-potential": "60/40"}, "leave-one-out": "k = 1, 2, 3"},
                       table=tmp_path / "t.csv", png=tmp_path / "f.png", pdf=tmp_path / "f.pdf")
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns[:8]) == ["method", "solver", "protocol", "mean", "std", "n_seeds", "source",
                                       "provenance"]
    ours = table[table["provenance"] == "rerun"].set_index("protocol")
    assert ours.loc["leave-one-out", "mean"] == pytest.approx(0.8) and ours.loc["leave-one-out", "std"] == 0.0
    assert ours.loc["one-step", "mean"] == pytest.approx(0.6)
    published = table[table["provenance"] == "published"].set_index("method")
    assert published.loc["OT-CFM", ["mean", "std"]].tolist() == [0.790, 0.068]
    assert published.loc["SB-CFM", "protocol"] == "leave-one-out"
    assert published.loc["JKOnet* (time-varying V)", ["protocol", "mean"]].tolist() == ["one-step", 0.623]
    assert len(published) == 9 and (tmp_path / "f.png").stat().st_size > 0

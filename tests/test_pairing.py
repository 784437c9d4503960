"""Pairing of snapshots across time: ``paired``, ``shuffled`` and ``independent`` data, from the simulator to
the couplings, for synthetic and user data; and the former name ``unpaired`` as a one-line error.

The law of independent snapshots is checked against paired ones by two-sample tests that do not share code
with the library: Kolmogorov-Smirnov per coordinate (scipy) and the energy distance with a permutation test.
"""

from __future__ import annotations

import subprocess

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from jkonetstar import couplings, data, pipeline
from jkonetstar.__main__ import main
from jkonetstar.simulate import simulate, simulate_independent, to_population
from snakemake_runs import ROOT, TINY_CONFIG, copy_checkout, snakemake_command, snakemake_env

SETTINGS = dict(potential="styblinski_tang", n_particles=400, dim=2, n_steps=5, dt=0.01)
RENAMED = r"^pairing 'unpaired' is now called 'shuffled' \(paired data with the order lost\): use 'shuffled'"


def energy_distance_p_value(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_permutations: int = 300):
    """Permutation p-value of the energy distance 2 E|A - B| - E|A - A'| - E|B - B'| between two samples."""
    pooled = np.concatenate([a, b])
    distances = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)
    n = len(a)

    def statistic(order):
        first, second = order[:n], order[n:]
        return (2 * distances[np.ix_(first, second)].mean() - distances[np.ix_(first, first)].mean()
                - distances[np.ix_(second, second)].mean())

    observed = statistic(np.arange(len(pooled)))
    permuted = [statistic(rng.permutation(len(pooled))) for _ in range(n_permutations)]
    return (1 + np.sum(np.asarray(permuted) >= observed)) / (1 + n_permutations)


@pytest.fixture(scope="module")
def paired_and_independent():
    key = jax.random.key(0)
    paired = np.asarray(simulate(key, **SETTINGS))
    # Another key for the independent populations, so that no snapshot is shared by construction.
    independent = np.asarray(simulate_independent(jax.random.key(1), **SETTINGS))
    return paired, independent


def test_independent_snapshot_t_is_snapshot_t_of_its_own_population(paired_and_independent):
    _, independent = paired_and_independent
    keys = jax.random.split(jax.random.key(1), SETTINGS["n_steps"] + 1)
    for t, k in enumerate(keys):
        np.testing.assert_array_equal(independent[t], np.asarray(simulate(k, **SETTINGS))[t])


def test_independent_snapshots_share_no_particle(paired_and_independent):
    _, independent = paired_and_independent
    x, t, particle = to_population(independent, independent=True)
    ids_per_snapshot = [set(particle[t == label]) for label in np.unique(t)]
    assert all(len(ids) == SETTINGS["n_particles"] for ids in ids_per_snapshot)
    assert len(set.union(*ids_per_snapshot)) == sum(map(len, ids_per_snapshot))  # pairwise disjoint
    # No position repeats across snapshots either (the paired snapshots are linked by a smooth flow instead).
    rows = {row.tobytes() for row in x}
    assert len(rows) == len(x)
    population = pipeline.simulate_population(1, **SETTINGS, independent=True)
    assert len(np.unique(population["particle"])) == len(population["particle"])


def test_independent_snapshots_have_the_law_of_the_paired_ones(paired_and_independent):
    paired, independent = paired_and_independent
    rng = np.random.default_rng(0)
    # Loose level: 6 snapshots x 2 coordinates, each test at 0.001, so a false alarm is unlikely (fixed keys).
    for t in range(SETTINGS["n_steps"] + 1):
        for axis in range(SETTINGS["dim"]):
            assert scipy.stats.ks_2samp(paired[t, :, axis], independent[t, :, axis]).pvalue > 1e-3, (t, axis)
        assert energy_distance_p_value(paired[t], independent[t], rng) > 1e-3, t
    # The tests have power here: the last snapshot differs in law from the first one.
    assert energy_distance_p_value(paired[-1], independent[0], rng) < 1e-2
    assert min(scipy.stats.ks_2samp(paired[-1, :, a], independent[0, :, a]).pvalue for a in range(2)) < 1e-3


def test_prepare_splits_independent_snapshots_within_every_snapshot():
    population = pipeline.simulate_population(0, **SETTINGS, independent=True)
    prepared = pipeline.prepare_training_data(population, 0, pairing="independent", test_ratio=0.25,
                                              block_size=100, n_components=2)
    assert prepared.summary["split_by"] == "population" and prepared.summary["pairing"] == "independent"
    n = SETTINGS["n_particles"]
    np.testing.assert_array_equal(np.bincount(prepared.t_test), np.full(SETTINGS["n_steps"] + 1, n // 4))
    np.testing.assert_array_equal(np.bincount(prepared.t_train), np.full(SETTINGS["n_steps"] + 1, n - n // 4))
    # Train and test are disjoint rows of the population.
    rows = lambda x: {r.tobytes() for r in np.asarray(x, np.float32)}
    assert not rows(prepared.x_train) & rows(prepared.x_test)
    assert rows(prepared.x_train) | rows(prepared.x_test) == rows(population["x"])
    np.testing.assert_allclose(prepared.train.weight.sum(dtype=np.float64), SETTINGS["n_steps"], rtol=1e-5)


def test_shuffled_with_one_block_equals_paired_through_the_pipeline():
    population = pipeline.simulate_population(0, **SETTINGS)
    common = dict(block_size=None, n_components=2)
    paired = pipeline.prepare_training_data(population, 3, pairing="paired", **common)
    shuffled = pipeline.prepare_training_data(population, 3, pairing="shuffled", **common)
    np.testing.assert_array_equal(paired.x_test, shuffled.x_test)  # the same split of the trajectories
    as_set = lambda d: {(a.tobytes(), b.tobytes(), int(t)) for a, b, t in zip(d.source, d.target, d.time)}
    assert as_set(paired.train) == as_set(shuffled.train)
    # The training population comes back shuffled: rows i of two snapshots are no longer one particle.
    ids = {row.tobytes(): p for row, p in zip(population["x"], population["particle"])}
    row_ids = lambda p, label: np.array([ids[r.tobytes()] for r in p.x_train[p.t_train == label]])
    np.testing.assert_array_equal(row_ids(paired, 0), row_ids(paired, 1))
    assert np.mean(row_ids(shuffled, 0) == row_ids(shuffled, 1)) < 0.1


def test_independent_population_with_a_repeated_particle_is_rejected():
    population = pipeline.simulate_population(0, **SETTINGS)
    with pytest.raises(ValueError, match=r"pairing 'independent', but particle id 0 is in 6 snapshots"):
        pipeline.prepare_training_data(population, 0, pairing="independent")


def test_unpaired_is_a_one_line_error_in_the_library_and_the_cli(tmp_path, capsys):
    population = pipeline.simulate_population(0, **SETTINGS)
    with pytest.raises(ValueError, match=RENAMED) as error:
        pipeline.prepare_training_data(population, 0, pairing="unpaired")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=RENAMED):
        couplings.check_pairing("unpaired")
    path = tmp_path / "population.npz"
    np.savez(path, **population)
    code = main(["couple", "--population", str(path), "--pairing", "unpaired", "--dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "use 'shuffled'" in err


def test_cli_simulates_and_couples_independent_snapshots(tmp_path, capsys):
    assert main(["simulate", "--potential", "wavy_plateau", "--n-particles", "60", "--independent",
                 "--dir", str(tmp_path)]) == 0
    path = tmp_path / "independent_population.npz"
    assert main(["couple", "--population", str(path), "--pairing", "independent", "--n-components", "2",
                 "--dir", str(tmp_path)]) == 0
    summary = yaml.safe_load((tmp_path / "couplings.json").read_text())
    assert summary["pairing"] == "independent" and summary["n_test"] == 6 * 30


def test_schema_pairings_are_the_library_ones():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert tuple(schema["$defs"]["pairing"]["enum"]) == couplings.PAIRINGS
    grid = schema["$defs"]["grid"]["properties"]["pairings"]["items"]
    assert grid == {"$ref": "#/$defs/pairing"}
    dataset = schema["$defs"]["real_dataset"]["properties"]["pairing"]["oneOf"]
    assert {"$ref": "#/$defs/pairing"} in dataset
    for name in ("config/config.yaml", "config/paper.yaml"):
        grid = yaml.safe_load((ROOT / name).read_text())["experiments"]["pairing"]
        assert tuple(grid["pairings"]) == couplings.PAIRINGS, name
        assert len(grid["n_particles"]) == 2 and {"jkonet-star-potential", "jkonet-star-linear-potential",
                                                   "jkonet-star-linear"} <= set(grid["solvers"])
    assert len(yaml.safe_load((ROOT / "config/paper.yaml").read_text())["experiments"]["pairing"]["potentials"]) == 15


# --- the user's own data -------------------------------------------------------------------------------------


def paired_course(rng, n=40, steps=3, dim=2, move=1e-4):
    """A noiseless paired time course: every particle moves by ``move`` per step; ids and times per row."""
    x0 = rng.uniform(-3, 3, size=(n, dim))
    x = np.concatenate([x0 + k * move for k in range(steps)])
    return x, np.repeat(np.arange(steps) * 7, n), np.tile(np.arange(n) + 100, steps)


def coupled_ids(prepared, x, particle):
    """The particle ids of the source and target of every coupling row (positions are distinct)."""
    lookup = {row.tobytes(): p for row, p in zip(np.asarray(x, np.float32), particle)}
    ids = lambda points: np.array([lookup[r.tobytes()] for r in np.asarray(points, np.float32)])
    return ids(prepared.train.source), ids(prepared.train.target)


def test_a_file_with_particle_ids_gives_the_identity_coupling(tmp_path):
    rng = np.random.default_rng(0)
    x, t, particle = paired_course(rng)
    order = rng.permutation(len(x))  # rows in any order: the ids say which rows are one particle
    np.savez(tmp_path / "paired.npz", X=x[order], t=t[order], particle=particle[order])
    population = data.load_population(tmp_path / "paired.npz")
    assert population["particle"].dtype == np.int64 and "test" not in population
    train, test = pipeline.given_split(population)
    # Blocks of 10 of the 20 training particles: the blocks align only if rows are ordered by particle.
    prepared = pipeline.prepare_training_data(train, 0, test_population=test, block_size=10, n_components=2)
    assert prepared.summary["pairing"] == "paired" and prepared.summary["split_by"] == "trajectory"
    source, target = coupled_ids(prepared, x, particle)
    np.testing.assert_array_equal(source, target)
    np.testing.assert_allclose(prepared.train.weight, 1 / 20, rtol=1e-6)
    # Held-out particles are whole trajectories.
    test_ids = {p for row, p in zip(x.astype(np.float32), particle) if row.tobytes() in
                {r.tobytes() for r in prepared.x_test}}
    assert len(test_ids) == 20 and len(prepared.x_test) == 60
    # The same rows without ids are independent snapshots: blocks of arbitrary rows, not the identity.
    np.savez(tmp_path / "anonymous.npz", X=x[order], t=t[order])
    anonymous = pipeline.prepare_training_data(data.load_population(tmp_path / "anonymous.npz"), 0,
                                               block_size=10, n_components=2)
    assert anonymous.summary["pairing"] == "independent"
    source, target = coupled_ids(anonymous, x, particle)
    assert np.mean(source == target) < 0.5


def test_csv_particle_column_is_read_as_ids_not_as_a_coordinate(tmp_path):
    x, t, particle = paired_course(np.random.default_rng(1))
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(day=t, cell=particle)
    frame.to_csv(tmp_path / "cells.csv", index=False)
    population = data.load_population(tmp_path / "cells.csv", time_column="day", particle_column="cell")
    assert population["x"].shape == (len(x), 2)
    np.testing.assert_array_equal(population["particle"], particle)


def test_pre_split_files_reach_the_couplings_as_given(tmp_path):
    rng = np.random.default_rng(2)
    x, t, particle = paired_course(rng, n=30)
    is_test = np.isin(particle, particle[:30][rng.permutation(30)[:10]])
    np.savez(tmp_path / "train.npz", X=x[~is_test], t=t[~is_test], particle=particle[~is_test])
    np.savez(tmp_path / "test.npz", X=x[is_test], t=t[is_test], particle=particle[is_test])
    population = data.load_population(tmp_path / "train.npz", test_path=tmp_path / "test.npz")
    np.testing.assert_array_equal(population["test"], np.repeat([False, True], [60, 30]))
    np.testing.assert_array_equal(population["time_values"], [0, 7, 14])
    train, test = pipeline.given_split(population)
    prepared = pipeline.prepare_training_data(train, 0, test_population=test, block_size=None, n_components=2)
    assert prepared.summary["split_by"] == "given"
    np.testing.assert_array_equal(prepared.x_test, x[is_test].astype(np.float32))
    np.testing.assert_array_equal(prepared.t_test, np.repeat([0, 1, 2], 10))
    source, target = coupled_ids(prepared, x, particle)
    np.testing.assert_array_equal(source, target)
    assert len(source) == 2 * 20


def test_upstream_split_directory_is_read_with_one_set_of_time_labels(tmp_path):
    rng = np.random.default_rng(3)
    for part, n in (("train", 12), ("test", 8)):
        np.save(tmp_path / f"{part}_data.npy", rng.normal(size=(3 * n, 4)))
        np.save(tmp_path / f"{part}_sample_labels.npy", np.repeat([1, 5, 9], n))
    assert data.is_split_directory(tmp_path)
    population = data.load_population(tmp_path)
    np.testing.assert_array_equal(population["time_values"], [1, 5, 9])
    train, test = pipeline.given_split(population)
    np.testing.assert_array_equal(train["x"], np.load(tmp_path / "train_data.npy").astype(np.float32))
    np.testing.assert_array_equal(test["t"], np.repeat([0, 1, 2], 8))
    np.save(tmp_path / "test_sample_labels.npy", np.repeat([1, 5, 10], 8))
    with pytest.raises(ValueError, match=r"train and test parts have different time points"):
        data.load_population(tmp_path)


def test_repeated_particle_id_within_a_snapshot_names_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 2)), t=[0, 0, 1, 1], particle=[3, 3, 3, 4])
    with pytest.raises(ValueError, match=r"bad\.npz: particle id 3 appears twice at time 0"):
        data.load_population(tmp_path / "bad.npz")


def test_baseline_trains_on_independent_snapshots():
    # Two steps: on 20 particles x 5 steps the untrained map's rollout (no teacher forcing) overflows in epoch 1.
    population = pipeline.simulate_population(0, **{**SETTINGS, "potential": "wavy_plateau", "n_particles": 80,
                                                    "n_steps": 2}, independent=True)
    prepared = pipeline.prepare_training_data(population, 0, pairing="independent", block_size=None,
                                              n_components=2)
    result = pipeline.train(pipeline.get_method("jkonet"), None, prepared.x_test, prepared.t_test, 0,
                            x_train=prepared.x_train, t_train=prepared.t_train, epochs=1, batch_size=20,
                            eval_every=1, inner_steps=4)
    assert result.status == "ok" and np.isfinite(result.history[-1]["w1"])


# --- the workflow -------------------------------------------------------------------------------------------


def dry_run(workdir, config):
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(snakemake_command("c.yaml", "--dry-run", "--quiet", "rules"), cwd=workdir,
                          capture_output=True, text=True, env=snakemake_env(), timeout=300)


def test_workflow_rejects_unpaired_in_one_line_and_plans_independent_populations(tmp_path):
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    grid = {"potentials": ["wavy_plateau"], "dims": [2], "n_particles": [100], "seeds": [0],
            "solvers": ["jkonet-star-linear-potential"]}
    config["experiments"] = {"pairing": {**grid, "pairings": ["paired", "unpaired"]}}
    result = dry_run(workdir, config)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "invalid config setting" in line]
    assert result.returncode != 0 and len(lines) == 1, result.stdout + result.stderr
    assert "experiments.pairing.pairings" in lines[0] and "use 'shuffled'" in lines[0]
    config["experiments"] = {"pairing": {**grid, "pairings": list(couplings.PAIRINGS)}}
    result = dry_run(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(line.split() for line in result.stdout.splitlines() if line.split()[:1] and
                  line.split()[0] in ("simulate", "simulate_independent", "couplings", "train"))
    assert counts == {"simulate": "1", "simulate_independent": "1", "couplings": "3", "train": "3"}


def test_pairing_figure_has_a_panel_per_solver_step_and_particle_count():
    from jkonetstar import figures

    rows = []
    for potential in ("flat", "relu"):
        for n in (1000, 4000):
            for pairing in couplings.PAIRINGS:
                run = dict(potential=potential, interaction="none", beta=0.0, dim=2, n_particles=n, pairing=pairing,
                           ot="exact", seed=0)
                rows.append({**run, "solver": "jkonet-star-linear", "predict_step": "explicit",
                             "metric": "w1_mean", "value": 0.1})
                rows.append({**run, "solver": "jkonet-star-linear", "predict_step": "explicit",
                             "metric": "diverged", "value": 0.0})
                for step in ("explicit", "implicit"):
                    rows.append({**run, "solver": "jkonet-star-potential", "predict_step": step, "metric": "w1_mean",
                                 "value": 0.2 if step == "explicit" else 0.05})
                rows.append({**run, "solver": "jkonet-star-potential", "predict_step": "implicit",
                             "metric": "diverged", "value": float(pairing == "independent" and n == 4000)})
    fig = figures.pairing_figure(pd.DataFrame(rows), potential_order=["relu", "flat"])
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 * 2 and all(title.endswith(("N = 1000", "N = 4000")) for title in titles)
    assert sum("explicit prediction" in title for title in titles) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(couplings.PAIRINGS)

"""The Snakemake workflow: planned jobs, a real tiny run, config errors and what a change reruns.

Every test works in a copy of the repository (``snakemake_runs.copy_checkout``), so it never touches
``results/`` or ``.snakemake/`` of the checkout. Jobs import the installed ``jkonetstar``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from snakemake_runs import ROOT, copy_checkout, copy_run, snakemake_command, snakemake_env

TINY_CONFIG = ".test/config/config.yaml"
TINY_RUNS = 4  # 2 potentials x 2 solvers


def snakemake(workdir, *args, config=TINY_CONFIG, timeout=600):
    """Runs Snakemake as `make reproduce` does, in ``workdir``; returns the completed process."""
    return subprocess.run(snakemake_command(config, *args), cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=snakemake_env())


def planned_jobs(workdir, config=TINY_CONFIG, *targets):
    """Returns {rule: job count} of a dry run of ``targets`` (default: all; empty when nothing is to be done)."""
    result = snakemake(workdir, *targets, "--dry-run", "--quiet", "rules", config=config)
    assert result.returncode == 0, result.stderr + result.stdout
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    stats = output.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.MULTILINE))
    return {rule: int(count) for rule, count in counts.items() if rule != "total"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config run end to end, for real, on 2 cores."""
    workdir = copy_checkout(tmp_path_factory.mktemp("workflow"))
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_paper_config_plans_the_figure3_grid(tmp_path):
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    grid = config["experiments"]["exp1"]
    figure3 = ["jkonet-star", "jkonet-star-potential", "jkonet-star-linear", "jkonet-star-linear-potential"]
    assert len(grid["potentials"]) == 15 and set(figure3) <= set(grid["solvers"])
    assert (grid["n_particles"], grid["dims"], grid["seeds"], config["data"]["test_ratio"]) == ([2000], [2], [0], 0.5)
    for name in ("jkonet-star", "jkonet-star-potential"):
        hp = config["solvers"][name]
        assert (hp["epochs"], hp["eval_every"], hp["batch_size"], hp["learning_rate"]) == (1000, 100, 250, 1e-3)

    jobs = planned_jobs(copy_checkout(tmp_path), "config/paper.yaml", "exp1")
    runs = 15 * len(grid["solvers"])  # 60 for the JKOnet* family, 90 with the JKOnet baselines
    assert jobs == {
        "simulate": 15,
        "couplings": 15,
        "train": runs,
        "evaluate": runs,
        "table": 1,
        "figure": 1,
        "exp1": 1,
    }


def test_default_config_runs_all_potentials_and_figure3_solvers(tmp_path):
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    grid = config["experiments"]["exp1"]
    assert len(grid["potentials"]) == 15
    assert grid["solvers"] == [
        "jkonet-star", "jkonet-star-potential", "jkonet-star-linear", "jkonet-star-linear-potential"
    ]
    jobs = planned_jobs(workdir, "config/config.yaml", "exp1")
    extra = sum(len(subset["potentials"]) * len(subset["solvers"]) for subset in grid.get("subsets", []))
    assert jobs["train"] == jobs["evaluate"] == (60 + extra) * len(grid["seeds"])
    assert jobs["simulate"] == jobs["couplings"] == 15 * len(grid["seeds"])


def test_tiny_run_writes_table_figure_and_run_files(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/exp1.csv")
    assert list(table.columns[-2:]) == ["metric", "value"]
    assert {"potential", "solver", "seed"} <= set(table.columns)
    w1 = table[table.metric == "w1_mean"]
    # one W1 per run and prediction step: both steps for the MLP solver, the explicit one for the linear solver
    assert len(w1) == TINY_RUNS + TINY_RUNS // 2
    steps = w1.groupby("solver")["predict_step"].apply(set)
    assert steps["jkonet-star-potential"] == {"explicit", "implicit"} and steps["jkonet-star-linear-potential"] == {
        "explicit"}
    configured = table[table.metric == "diverged"].groupby("solver")["predict_step"].apply(set)
    assert configured["jkonet-star-potential"] == {"implicit"}  # the library default: the step the loss fits
    assert np.all(np.isfinite(w1.value)) and np.all(w1.value >= 0)
    # Every run beside the no-motion reference of its test split (x_{t+1} = x_t), and the ratio, for every step.
    values = table.set_index(["potential", "solver", "predict_step", "metric"]).value
    for (potential, solver, step, _), mean in w1.set_index(["potential", "solver", "predict_step", "metric"]).value.items():
        reference = table[(table.potential == potential) & (table.metric == "no_motion_w1_mean")].value
        assert reference.nunique() == 1
        ratio = values[potential, solver, step, "w1_ratio"]
        if potential == "flat":  # no drift, no noise: the snapshots are equal, the reference 0, the ratio undefined
            assert reference.iloc[0] == 0 and np.isnan(ratio)
        else:
            assert reference.iloc[0] > 0 and ratio == pytest.approx(mean / reference.iloc[0])
    assert {"w1_std", "w1_step_1", "seconds_per_epoch", "compile_seconds", "diverged", "epochs_run"} <= set(
        table.metric
    )
    epochs = table[table.metric == "epochs_run"].set_index("solver").value
    assert set(epochs["jkonet-star-linear-potential"]) == {1}
    assert set(epochs["jkonet-star-potential"]) == {20}
    history = pd.read_csv(tiny_run / "results/tables/exp1_history.csv")
    assert {"epoch", "loss", "seconds", "w1", "solver", "potential"} <= set(history.columns)
    for name in ("exp1.png", "exp1.pdf"):
        assert (tiny_run / "results/figures" / name).stat().st_size > 10_000
    run = (tiny_run / "results/runs/potential~flat/interaction~none/beta~0.0/dim~2/n~100/seed~0/pairing~paired"
           / "ot~exact/solver~jkonet-star-potential")
    for name in ("model.npz", "history.csv", "metrics.json", "levels.png", "predictions.png"):
        assert (run / name).is_file(), name
    logs = list((tiny_run / "results/logs/train").rglob("*.log"))
    assert len(logs) == TINY_RUNS and all(log.stat().st_size > 0 for log in logs)
    assert len(list((tiny_run / "results/benchmarks/train").rglob("*.tsv"))) == TINY_RUNS


def test_second_run_has_nothing_to_do(tiny_run):
    assert planned_jobs(tiny_run) == {}


def test_touch_reruns_nothing_and_edits_rerun_only_their_stage(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "copy")  # keeps the mtimes and .snakemake metadata
    script = workdir / "workflow/scripts/train.py"
    library = workdir / "src/jkonetstar/training.py"
    os.utime(script)
    os.utime(library)
    assert planned_jobs(workdir) == {}

    library.write_text(library.read_text() + "\n# an edit\n")
    assert planned_jobs(workdir) == {"train": 4, "evaluate": 4, "table": 1, "figure": 1, "prediction_figure": 1,
                                     "all": 1}
    library.write_text(library.read_text().removesuffix("\n# an edit\n"))

    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    config["solvers"]["jkonet-star-potential"]["learning_rate"] = 0.01
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(workdir, config="changed.yaml") == {
        "train": 2, "evaluate": 2, "table": 1, "figure": 1, "prediction_figure": 1, "all": 1
    }

    simulator = workdir / "src/jkonetstar/simulate.py"
    simulator.write_text(simulator.read_text() + "\n# an edit\n")
    assert planned_jobs(workdir) == {
        "simulate": 2, "couplings": 2, "train": 4, "evaluate": 4, "table": 1, "figure": 1, "prediction_figure": 1,
        "all": 1
    }


def test_diverged_training_is_recorded_and_the_figure_still_made(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "copy")
    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    config["solvers"]["jkonet-star-potential"]["learning_rate"] = 1.0e6  # the first epoch's loss is not finite
    (workdir / "diverging.yaml").write_text(yaml.safe_dump(config))
    figure_before = (workdir / "results/figures/exp1.png").stat().st_mtime
    result = snakemake(workdir, "--cores", "2", config="diverging.yaml")
    assert result.returncode == 0, result.stderr[-5000:]

    table = pd.read_csv(workdir / "results/tables/exp1.csv")
    diverged = table[table.metric == "diverged"].set_index(["solver", "potential"]).value
    assert set(diverged["jkonet-star-potential"]) == {1.0}
    assert set(diverged["jkonet-star-linear-potential"]) == {0.0}
    # Never scored as if trained: every W1 and recovery row of the diverged runs is NaN, with every step, and
    # carries status diverged; the metrics of the last finite parameters stay in metrics.json only.
    runs = table[table.solver == "jkonet-star-potential"]
    assert set(runs.status) == {"diverged"}
    scored = runs[runs.metric.str.startswith(("w1_", "potential_grad_")) | (runs.metric == "last_evaluated_w1")]
    assert len(scored) and scored.value.isna().all(), scored[scored.value.notna()]
    assert set(scored.predict_step) == {"explicit", "implicit"}
    linear = table[(table.solver == "jkonet-star-linear-potential") & (table.metric == "w1_mean")]
    assert set(linear.status) == {"ok"} and np.all(np.isfinite(linear.value))
    assert (workdir / "results/figures/exp1.png").stat().st_mtime > figure_before
    prediction = pd.read_csv(workdir / "results/tables/prediction.csv")
    assert prediction[prediction.solver == "jkonet-star-potential"].value.isna().all()
    summary = pd.read_csv(workdir / "results/tables/exp1_summary.csv")
    assert summary[(summary.solver == "jkonet-star-potential") & (summary.metric == "w1_mean")].n_seeds.eq(0).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["experiments"]["exp1"]["potentials"].append("wavy"),
         r"invalid config setting experiments\.exp1\.potentials\[2\]: 'wavy' is not one of"),
        (lambda c: c["data"].update(dt=-0.01), r"invalid config setting data\.dt: -0\.01 is less than"),
        (lambda c: c["experiments"]["exp1"].update(n_particles=[1]),
         r"invalid config setting experiments\.exp1\.n_particles\[0\]: 1 is less than the minimum of 2"),
        (lambda c: c["solvers"]["jkonet-star-potential"].update(lr=0.1),
         r"invalid config setting solvers\.jkonet-star-potential: .*'lr' was unexpected"),
        (lambda c: c["solvers"]["jkonet-star-potential"].update(predict_step="midpoint"),
         r"invalid config setting solvers\.jkonet-star-potential\.predict_step: 'midpoint' is not one of"),
    ],
    ids=["unknown-potential", "negative-dt", "one-particle", "unknown-key", "unknown-predict-step"],
)
def test_bad_config_fails_before_any_job_with_one_line(tmp_path, change, message):
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    change(config)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", config="bad.yaml")
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if re.search(message, line)]
    assert len(lines) == 1, result.stderr
    assert not (workdir / "results").exists()


def test_every_registered_solver_has_default_hyper_parameters(tmp_path):
    # A solver not listed under solvers: runs with the schema's defaults (here the internal-energy MLP).
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    config["experiments"]["exp1"]["solvers"] = ["jkonet-star-potential-internal", "jkonet-star-linear-interaction"]
    (workdir / "defaults.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir, "defaults.yaml")
    assert jobs["train"] == 4 and jobs["evaluate"] == 4


def test_one_dimensional_config_runs_end_to_end(tmp_path):
    # d = 1: every metric is written (pictures drawn as curves and histograms, never at the cost of a metric).
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    config["experiments"]["exp1"].update(dims=[1], potentials=["wavy_plateau"])
    (workdir / "one-d.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "2", config="one-d.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    table = pd.read_csv(workdir / "results/tables/exp1.csv")
    w1 = table[table.metric == "w1_mean"]
    assert set(w1.solver) == set(config["experiments"]["exp1"]["solvers"]) and np.all(np.isfinite(w1.value))
    assert set(table.dim) == {1}
    for run in (workdir / "results/runs").rglob("metrics.json"):
        assert (run.parent / "levels.png").stat().st_size > 0 and (run.parent / "predictions.png").stat().st_size > 0
    logs = "".join(p.read_text() for p in (workdir / "results/logs/evaluate").rglob("*.log"))
    assert "could not be drawn" not in logs, logs[-2000:]


@pytest.mark.parametrize("config", [TINY_CONFIG, "config/config.yaml", "config/paper.yaml"])
def test_snakemake_lint_passes(config):
    # Rule files hold rules, helpers live in rules/common.smk, paths are f-strings (snakemake --lint).
    result = subprocess.run(snakemake_command(config, "--lint"), cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=snakemake_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output[-3000:]


def test_profiles_name_only_rules_that_exist():
    # set-resources / set-threads / groups of a rule that does not exist are silently ignored by Snakemake.
    listed = subprocess.run(snakemake_command("config/config.yaml", "--list-rules"), cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=snakemake_env())
    rules = set(listed.stdout.split())
    assert {"simulate", "couplings", "train", "evaluate", "table", "figure"} <= rules
    for path in sorted(ROOT.glob("profiles/*/profile.yaml")):
        profile = yaml.safe_load(path.read_text())
        named = [*profile.get("set-resources", {}), *profile.get("set-threads", {}),
                 *[group.split("=")[0] for group in profile.get("groups", [])]]
        assert set(named) <= rules, f"{path}: {sorted(set(named) - rules)}"


def test_rule_files_are_snakefmt_formatted():
    # snakefmt is pinned with the test dependencies; its line length (120) is in pyproject.toml.
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = subprocess.run([str(snakefmt), "--check", "--diff", "workflow/"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

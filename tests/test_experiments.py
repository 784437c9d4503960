"""Exp. 4.2 (scaling laws), 4.3 (general energies), the coupling ablation and the pairing comparison.

The paper config is planned (dry run) and its job counts checked against the paper's grids; a tiny config
runs every one of these experiments end to end for real. Every workflow test works in a copy of the
repository (``snakemake_runs.copy_checkout``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml

from jkonetstar import figures, models
from snakemake_runs import ROOT, copy_checkout, run_snakemake, snakemake_command, snakemake_env, write_config

EXPERIMENTS_CONFIG = Path(".test/config/experiments.yaml")
FIGURES = ("exp2", "exp3", "ablation", "pairing")


def job_counts(workdir: Path, config: Path | str, *targets: str) -> tuple[dict[str, int], float]:
    """Returns ({rule: job count}, seconds) of `snakemake --dry-run --quiet rules`."""
    start = time.perf_counter()
    output = run_snakemake(workdir, Path(config), *targets, "--dry-run", "--quiet", "rules")
    seconds = time.perf_counter() - start
    stats = output.split("Job stats:", 1)[1]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.MULTILINE)}
    counts.pop("total", None)
    return counts, seconds


# --- planning ----------------------------------------------------------------------------------------------


def test_paper_config_plans_the_paper_grids_within_a_minute(tmp_path):
    workdir = copy_checkout(tmp_path)
    exp1_solvers = len(yaml.safe_load((ROOT / "config/paper.yaml").read_text())["experiments"]["exp1"]["solvers"])
    counts, seconds = job_counts(workdir, "config/paper.yaml")
    # Datasets: Exp. 4.1 15 (shared by the ablation's exact and the pairing's paired runs), Exp. 4.2
    # 15 potentials x 5 d x 5 N = 375, Exp. 4.3 15 potentials x 14 interactions x 3 betas = 630, pairing
    # 15 at N = 4000 (two coupling blocks); the independent populations of the pairing, 15 x 2 N.
    assert counts["simulate"] == 15 + 375 + 630 + 15
    assert counts["simulate_independent"] == 15 * 2
    # Coupled data: one per dataset, plus 15 x 3 Sinkhorn epsilons, 15 x 2 shuffled and independent at N = 2000
    # and 15 x 3 pairings at 4000.
    assert counts["couplings"] == 15 + 375 + 630 + 45 + 30 + 45
    # Runs: Exp. 4.1 15 potentials x its solvers, Exp. 4.2 375, Exp. 4.3 630 x 2 solvers = 1260, ablation 45
    # Sinkhorn runs, pairing (3 solvers on 15 potentials, 2 baselines on 2) x (2 N x 3 pairings) less the paired
    # runs at N = 2000, which are Exp. 4.1's.
    pairing_runs = (3 * 15 + 2 * 2) * (2 * 3 - 1)
    assert counts["train"] == counts["evaluate"] == 15 * exp1_solvers + 375 + 1260 + 45 + pairing_runs
    assert {rule: counts[rule] for rule in ("table", "prediction_figure", "all")} == {
        "table": 5, "prediction_figure": 1, "all": 1}
    assert "recovery" not in counts  # every evaluate job scores the recovery of the true energies
    assert counts["figure"] == 1 + len(FIGURES)  # exp1 and the others: one figure job per experiment
    # generous: the planning time is a usability bound (about 16 s on an idle 2-core machine), not a benchmark
    assert seconds < 240, f"planning the paper DAG took {seconds:.0f} s"


@pytest.mark.parametrize(
    "target, runs",
    [("exp2", 375), ("exp3", 1260), ("ablation", 60), ("pairing", (3 * 15 + 2 * 2) * 2 * 3)],
)
def test_each_experiment_has_a_target_rule_with_its_paper_grid(tmp_path, target, runs):
    workdir = copy_checkout(tmp_path)
    counts, _ = job_counts(workdir, "config/paper.yaml", target)
    assert counts["train"] == runs
    assert counts[target] == 1 and counts["figure"] == 1 and counts["table"] == 1


def test_default_config_covers_every_experiment_at_laptop_scale(tmp_path):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert {"exp1", *FIGURES} <= set(config["experiments"])
    workdir = copy_checkout(tmp_path)
    counts, _ = job_counts(workdir, "config/config.yaml")
    # About 330 jobs, 60 of them the pairing grid's (2 potentials x 3 pairings x 3 solvers x 2 N, less the 6
    # paired runs at N = 1000 that are exp1's): the default run must stay a laptop-scale run.
    assert sum(counts.values()) < 340, counts


def test_linear_solver_above_three_dimensions_is_rejected_in_one_line(tmp_path):
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((ROOT / EXPERIMENTS_CONFIG).read_text())
    config["experiments"]["exp2"]["solvers"] = ["jkonet-star-linear-potential"]
    config["solvers"]["jkonet-star-linear-potential"]["features"] = {}  # the paper's: degree 4, 10 RBFs per axis
    write_config(workdir / "bad.yaml", config)
    import subprocess

    result = subprocess.run(snakemake_command("bad.yaml", "--dry-run"), cwd=workdir, capture_output=True, text=True,
                            env=snakemake_env(), timeout=120)
    assert result.returncode != 0
    message = [line for line in (result.stdout + result.stderr).splitlines() if "experiments.exp2.dims" in line]
    assert len(message) == 1 and "jkonet-star-linear-potential" in message[0] and "d = [4, 6]" in message[0]


# --- library pieces -------------------------------------------------------------------------------------------


def test_energy_gradients_match_autodiff_of_the_learnt_potential():
    spec = models.get_solver("jkonet-star")
    params = models.init_params(jax.random.key(0), spec, dim=2, hidden=(8, 8))
    x = jax.random.normal(jax.random.key(1), (7, 2))
    expected = jax.vmap(jax.grad(lambda p: models.potential_values(params, spec, p[None])[0]))(x)
    np.testing.assert_allclose(models.energy_gradients(params, spec, "potential", x), expected, rtol=1e-5, atol=1e-6)
    assert models.energy_gradients(params, spec, "interaction", x).shape == (7, 2)
    with pytest.raises(ValueError, match="learns no interaction"):
        models.energy_gradients(params, models.get_solver("jkonet-star-potential"), "interaction", x)
    with pytest.raises(ValueError, match="unknown energy term"):
        models.energy_gradients(params, spec, "internal", x)


def test_energy_gradients_of_a_linear_fit_recover_a_quadratic_potential():
    # Noise-free explicit steps of V(x) = |x|^2 / 2 (grad V = x): the linear potential solver is exact
    # up to its ridge, so its gradients correlate with the true ones almost perfectly.
    from jkonetstar import training

    x0 = jax.random.uniform(jax.random.key(0), (200, 2), minval=-3, maxval=3)
    x1 = x0 - 0.01 * x0
    ones = jnp.ones(200)
    data = training.TrainingData(source=x0, target=x1, time=jnp.ones(200, jnp.int32), weight=ones / 200,
                                 rho=ones, grad_rho=jnp.zeros_like(x0))
    spec = models.get_solver("jkonet-star-linear-potential")
    params, _ = models.fit_linear(spec, data, ridge=1e-8, feature_options={"degree": 2, "rbf_per_dim": 0})
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(-3, 3, 9), jnp.linspace(-3, 3, 9)), -1).reshape(-1, 2)
    learned = np.asarray(models.energy_gradients(params, spec, "potential", grid))
    true = np.asarray(jax.vmap(jax.grad(lambda v: 0.5 * jnp.sum(v**2)))(grid))
    assert np.corrcoef(learned.ravel(), true.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(learned / 0.01, true, atol=1e-2)  # learnt V ~ dt V with tau = 1


def tidy(rows):
    frame = pd.DataFrame(rows)
    defaults = {"interaction": "none", "beta": 0.0, "dim": 2, "n_particles": 100, "pairing": "paired", "ot": "exact",
                "solver": "jkonet-star-potential", "seed": 0}
    for column, value in defaults.items():
        if column not in frame:
            frame[column] = value
    return frame[[*figures.RUN_KEYS, "metric", "value"]]


def test_seed_summary_gives_mean_and_spread_over_seeds():
    table = tidy([{"potential": "flat", "seed": s, "metric": "w1_mean", "value": v} for s, v in ((0, 1.0), (1, 3.0))])
    summary = figures.seed_summary(table)
    row = summary.iloc[0]
    assert (row["mean"], row["std"], row["min"], row["max"], row["n_seeds"]) == (2.0, 1.0, 1.0, 3.0, 2)


def test_failed_runs_count_divergence_and_non_finite_errors():
    table = tidy([
        {"potential": "flat", "seed": 0, "metric": "w1_mean", "value": 0.1},
        {"potential": "flat", "seed": 0, "metric": "diverged", "value": 1.0},
        {"potential": "sphere", "seed": 0, "metric": "w1_mean", "value": np.nan},
        {"potential": "sphere", "seed": 0, "metric": "diverged", "value": 0.0},
        {"potential": "relu", "seed": 0, "metric": "w1_mean", "value": 0.2},
        {"potential": "relu", "seed": 0, "metric": "diverged", "value": 0.0},
    ])
    runs = figures.failed_runs(table).set_index("potential")
    assert runs["failed"].to_dict() == {"flat": True, "relu": False, "sphere": True}
    assert np.isnan(runs.loc["flat", "w1_mean"]) and runs.loc["relu", "w1_mean"] == 0.2


def test_ot_labels_sort_exact_first_then_by_epsilon():
    assert figures.ot_order(["sinkhorn-1.0", "sinkhorn-0.01", "exact", "sinkhorn-0.1"]) == [
        "exact", "sinkhorn-0.01", "sinkhorn-0.1", "sinkhorn-1.0"]


def test_exp2_heatmaps_write_mean_and_spread_with_several_seeds():
    rows = [{"potential": p, "dim": d, "n_particles": n, "seed": s, "metric": "w1_mean", "value": 0.1 * d + s}
            for p in ("flat", "relu") for d in (10, 20) for n in (200, 400) for s in (0, 1)]
    fig = figures.exp2_heatmaps(tidy(rows), potential_order=["relu", "flat"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["relu", "flat"]
    texts = [t.get_text() for t in panels[0].texts]
    assert "1.5\n±0.5" in texts and len(texts) == 4


# --- the tiny config, for real --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiments_run(tmp_path_factory) -> Path:
    """Every experiment of .test/config/experiments.yaml built end to end on 2 cores, then the report."""
    workdir = copy_checkout(tmp_path_factory.mktemp("experiments"))
    run_snakemake(workdir, EXPERIMENTS_CONFIG, "--cores", "2", timeout=900)
    run_snakemake(workdir, EXPERIMENTS_CONFIG, "--report", "results/report.html", timeout=300)
    return workdir


def test_every_experiment_writes_its_tables_figures_and_summary(experiments_run):
    for name in FIGURES:
        table = pd.read_csv(experiments_run / f"results/tables/{name}.csv")
        assert list(table.columns) == [*figures.RUN_KEYS, "predict_step", "status", "metric", "value"]
        assert np.all(np.isfinite(table.loc[table.metric == "w1_mean", "value"]))
        summary = pd.read_csv(experiments_run / f"results/tables/{name}_summary.csv")
        assert {"metric", "mean", "std", "min", "max", "n_seeds"} <= set(summary.columns)
        for suffix in ("png", "pdf"):
            assert (experiments_run / f"results/figures/{name}.{suffix}").stat().st_size > 10_000


def test_exp2_table_spans_the_dimension_grid(experiments_run):
    table = pd.read_csv(experiments_run / "results/tables/exp2.csv")
    table = figures.configured_step_rows(table)  # the MLP runs are scored with both prediction steps
    assert sorted(table.loc[table.metric == "w1_mean", "dim"]) == [4, 6]


def test_exp3_table_holds_the_recovery_of_every_energy_term(experiments_run):
    table = pd.read_csv(experiments_run / "results/tables/exp3.csv")
    metrics = table.groupby("solver")["metric"].apply(set)
    for solver in ("jkonet-star", "jkonet-star-linear"):
        assert {"beta_hat", "beta_recovered", "beta_error", "beta_abs_recovered", "beta_abs_error",
                "potential_grad_corr", "interaction_grad_corr", "potential_grad_rel_error",
                "interaction_grad_rel_error", "potential_grad_nmae", "potential_grad_cosine",
                "interaction_grad_nmae", "interaction_grad_cosine"} <= metrics[solver]
    beta = table[table.metric == "beta_recovered"]
    assert np.all(np.isfinite(beta.value))
    wide = table[table.metric.isin(["beta_recovered", "beta_abs_recovered"])].pivot_table(
        index="solver", columns="metric", values="value")
    np.testing.assert_allclose(wide["beta_abs_recovered"], wide["beta_recovered"].abs())
    cosine = table[table.metric.str.endswith("_grad_cosine")].value
    assert np.all((cosine >= -1 - 1e-9) & (cosine <= 1 + 1e-9))


def test_every_synthetic_table_scores_the_recovery_of_the_potential(experiments_run):
    for name in ("exp2", "ablation", "pairing"):
        table = pd.read_csv(experiments_run / f"results/tables/{name}.csv")
        run = ["potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot", "solver", "seed"]
        nmae = table[table.metric == "potential_grad_nmae"]
        assert len(nmae) == len(table.drop_duplicates(run)) and not nmae.duplicated(run).any(), name
        assert np.all(np.isfinite(nmae.value)), name
    corr = table[table.metric.str.endswith("_grad_corr")].value
    assert np.all((corr >= -1) & (corr <= 1))


def test_ablation_table_has_one_run_per_coupling_with_its_time(experiments_run):
    table = pd.read_csv(experiments_run / "results/tables/ablation.csv")
    assert set(table.ot) == {"exact", "sinkhorn-0.1"}
    seconds = table[table.metric == "coupling_seconds"].set_index("ot").value
    assert np.all(seconds > 0)
    assert (experiments_run / "results/data/potential~wavy_plateau/interaction~none/beta~0.0/dim~2/n~100/seed~0"
            / "pairing~paired/ot~sinkhorn-0.1/couplings.json").is_file()


def test_pairing_table_has_every_pairing(experiments_run):
    table = pd.read_csv(experiments_run / "results/tables/pairing.csv")
    assert set(table.pairing) == {"paired", "shuffled", "independent"}
    base = experiments_run / "results/data/potential~wavy_plateau/interaction~none/beta~0.0/dim~2/n~100/seed~0"
    independent = np.load(base / "independent_population.npz")
    assert len(np.unique(independent["particle"])) == len(independent["particle"])  # no particle seen twice
    summary = yaml.safe_load((base / "pairing~independent/ot~exact/couplings.json").read_text())
    assert summary["split_by"] == "population" and summary["pairing"] == "independent"


def test_report_is_written(experiments_run):
    report = experiments_run / "results/report.html"
    assert report.stat().st_size > 100_000
    # One caption file serves every experiment's figure (workflow/report/figure.rst, Jinja on the wildcard):
    # each figure must get its own text.
    text = report.read_text()
    for phrase in ("scaling laws", "general energy functionals", "Coupling ablation", "with paired snapshots"):
        assert phrase in text, phrase


def test_second_run_plans_nothing(experiments_run):
    counts = run_snakemake(experiments_run, EXPERIMENTS_CONFIG, "--dry-run")
    assert "Nothing to be done" in counts

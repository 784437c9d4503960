"""Projects the cost of a config's whole grid (default ``config/paper.yaml``) from a sample of each job kind.

1. Lists every job of the grid by a Snakemake dry run and attributes each one to the first experiment of
   the config whose settings it matches (jobs shared by experiments run once; they count for the first).
2. Measures, on this machine, the per-epoch seconds of every distinct training kind (solver, dimension,
   particles) from ``--epochs`` epochs on random data of the job's shape (compilation timed apart), and
   the whole-job seconds of one job of each other kind through ``python -m jkonetstar`` at the base size
   (2000 particles, d = 2): simulate, couplings, evaluate, a closed-form train job, and the fixed part of an
   MLP train job (process start, compilation, evaluations: the job minus its epochs).
3. Projects each job: MLP train jobs ``fixed x n / 2000 + epochs x epoch seconds`` (the JKOnet baselines:
   ``compile + epochs x epoch seconds`` plus the same fixed part), other jobs their base-size seconds times
   ``n / 2000`` (their cost grows about linearly in the particles: exact couplings in blocks of 1000,
   evaluation on the test half). These scalings are the projection's assumptions; the epochs are measured.

Prints per experiment: jobs by rule, projected hours of this machine running one job at a time (each job
uses both cores as it does here; the baselines one, as they run fastest pinned), and the wall time on
``--cores`` cluster cores with the SLURM profile's cores per job (train 2, others 1), the longest job a
lower bound. Prints this run's matmul rate and load beside them (``benchmarks/common.py``); on a loaded
machine the hours come out too high. Run:

    .venv/bin/python benchmarks/paper_grid_cost.py [--config config/paper.yaml] [--epochs 3] [--cores 200]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from common import REFERENCE_RATE, ROOT, cores, loaded, matmul_rates, whole_job_seconds
from jkonetstar import models, training

BASE_N, BASE_DIM = 2000, 2
CORES_PER_JOB = {"train": 2}  # profiles/slurm/profile.yaml: cpus_per_task (1 for every other rule)
BASELINES = ("jkonet", "jkonet-vanilla", "jkonet-monge-gap")
FIELDS = {"potential": "potentials", "interaction": "interactions", "beta": "betas", "dim": "dims",
          "n": "n_particles", "seed": "seeds", "pairing": "pairings", "ot": "couplings", "solver": "solvers"}
DEFAULTS = {"interactions": ["none"], "betas": [0.0], "pairings": ["paired"], "couplings": ["exact"]}


def dry_run_jobs(config):
    """``[(rule, {wildcard: value})]`` of every job a dry run of ``config`` would run."""
    snakemake = Path(sys.executable).parent / "snakemake"
    out = subprocess.run([str(snakemake), "-n", "--configfile", str(config), "--cores", "1"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    jobs, rule = [], None
    for line in out.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
            jobs.append((rule, {}))
        elif rule and line.strip().startswith("wildcards:"):
            wildcards = dict(item.split("=", 1) for item in line.split(":", 1)[1].strip().split(", "))
            # the workflow's one {data} wildcard spells its settings: potential~p/.../dim~2/n~2000/...
            for part in wildcards.pop("data", "").split("/"):
                if "~" in part:
                    key, value = part.split("~", 1)
                    wildcards.setdefault(key, value)
            jobs[-1] = (rule, wildcards)
        elif not line.strip():
            rule = None
    return jobs


def _ot_label(value):
    return "exact" if str(value) == "exact" else f"sinkhorn-{value}"


def experiment_of(wildcards, experiments):
    """The first experiment whose grid (or one of its ``subsets``) holds the job's settings, else ``other``."""
    for name, grid in experiments.items():
        variants = [grid] + [grid | subset for subset in grid.get("subsets", [])]
        for variant in variants:
            if all(field not in wildcards or _matches(field, wildcards[field], variant) for field in FIELDS):
                return name
    return "other"


def _matches(field, value, grid):
    allowed = grid.get(FIELDS[field], DEFAULTS.get(FIELDS[field]))
    if allowed is None:
        return True
    if field == "ot":
        return value in [_ot_label(v) for v in allowed]
    return value in [str(v) for v in allowed]


def random_couplings(key, n_train, dim, n_steps):
    k1, k2 = jax.random.split(key)
    m = n_steps * n_train
    source = jax.random.normal(k1, (m, dim))
    return training.TrainingData(source, source + 0.01 * jax.random.normal(k2, (m, dim)),
                                 jnp.repeat(jnp.arange(1, n_steps + 1), n_train), jnp.full((m,), 1.0 / n_train),
                                 jnp.ones((m,)), jnp.zeros((m, dim)))


def epoch_seconds(solver, dim, n, settings, data_settings, epochs):
    """(compile seconds, median seconds per epoch after the first) of ``epochs`` epochs on random data."""
    n_train = int(round(n * (1 - data_settings.get("test_ratio", 0.5))))
    n_steps = data_settings.get("n_steps", 5)
    key = jax.random.key(0)
    if solver in BASELINES:
        from jkonetstar.baselines import fit_jkonet

        snapshots = jax.random.normal(key, (n_steps + 1, n_train, dim))
        keep = {k: settings[k] for k in ("batch_size", "learning_rate", "clip_norm", "inner_steps",
                                         "inner_learning_rate", "epsilon", "tau") if k in settings}
        result = fit_jkonet(key, solver, snapshots, epochs=epochs, eval_every=epochs, **keep)
    else:
        keep = {k: settings[k] for k in ("batch_size", "learning_rate", "clip_norm", "tau", "interaction_average")
                if k in settings}
        if "hidden" in settings:
            keep["hidden"] = tuple(settings["hidden"])
        result = training.fit(key, models.get_solver(solver), random_couplings(key, n_train, dim, n_steps),
                              epochs=epochs, eval_every=epochs, **keep)
    seconds = [row["seconds"] for row in result.history[1:]] or [result.history[0]["seconds"]]
    return result.compile_seconds, float(np.median(seconds))


def base_jobs(epochs_mlp):
    """Whole-job seconds at the base size through the command line: simulate, couplings, train, evaluate."""
    seconds = whole_job_seconds(2000, {"jkonet-star-linear": [], "jkonet-star-potential": [
        "--epochs", epochs_mlp, "--eval-every", max(1, epochs_mlp // 10)]}, evaluated="jkonet-star-linear")
    return {"simulate": seconds["simulate"], "couplings": seconds["couplings"],
            "train linear": seconds["train jkonet-star-linear"], "train mlp": seconds["train jkonet-star-potential"],
            "evaluate": seconds["evaluate"]}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs sampled per training kind (first not timed)")
    parser.add_argument("--cores", type=int, default=200, help="cluster cores for the wall-time column")
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    experiments = config["experiments"]
    solver_settings = config.get("solvers", {})
    rate, cpu_rate = matmul_rates()
    print(f"{args.config}: {cores()} cores, load average {os.getloadavg()[0]:.1f}, matmul {rate:.0f} GFLOP/s "
          f"({cpu_rate:.0f} per CPU second)" + ("; machine loaded: hours come out too high" if loaded() else ""))
    jobs = dry_run_jobs(args.config)
    print(f"dry run: {len(jobs)} jobs")

    kinds = sorted({(w["solver"], int(w["dim"]), int(w["n"])) for rule, w in jobs if rule == "train"
                    and (w["solver"] in BASELINES or models.get_solver(w["solver"]).parametrisation == "mlp")})
    per_epoch = {}
    for solver, dim, n in kinds:
        per_epoch[solver, dim, n] = epoch_seconds(solver, dim, n, solver_settings.get(solver, {}),
                                                  config.get("data", {}), args.epochs)
        print(f"  sampled {solver:24s} d={dim:<3d} n={n:<6d} compile {per_epoch[solver, dim, n][0]:6.2f} s, "
              f"{per_epoch[solver, dim, n][1]:.4g} s/epoch", flush=True)
    potential_epochs = solver_settings.get("jkonet-star-potential", {}).get("epochs", 1000)
    base = base_jobs(potential_epochs)
    potential_epoch = per_epoch.get(("jkonet-star-potential", BASE_DIM, BASE_N))
    if potential_epoch is None:  # the grid has no base-size JKOnet*_V job: sample one
        potential_epoch = epoch_seconds("jkonet-star-potential", BASE_DIM, BASE_N,
                                        solver_settings.get("jkonet-star-potential", {}), config.get("data", {}),
                                        args.epochs)
    mlp_fixed = max(0.0, base["train mlp"] - potential_epochs * potential_epoch[1])
    print("  base-size jobs (s): " + ", ".join(f"{k} {v:.1f}" for k, v in base.items())
          + f"; fixed part of an MLP train job {mlp_fixed:.1f}")

    def job_seconds(rule, w):
        scale = int(w.get("n", BASE_N)) / BASE_N
        if rule == "train":
            solver = w["solver"]
            if (solver, int(w["dim"]), int(w["n"])) in per_epoch:
                compile_s, epoch_s = per_epoch[solver, int(w["dim"]), int(w["n"])]
                epochs = solver_settings.get(solver, {}).get("epochs", 1000)
                return mlp_fixed * scale + epochs * epoch_s + (compile_s if solver in BASELINES else 0.0)
            return base["train linear"] * scale
        if rule in ("simulate", "simulate_independent"):
            return base["simulate"] * scale
        return base.get(rule, 0.0) * scale

    table = collections.defaultdict(lambda: collections.defaultdict(float))
    for rule, w in jobs:
        name = experiment_of(w, experiments) if w else "aggregation"
        seconds = job_seconds(rule, w)
        row = table[name]
        row[f"jobs {rule}"] += 1
        row["hours"] += seconds / 3600
        row["core hours"] += seconds * CORES_PER_JOB.get(rule, 1) / 3600
        row["longest s"] = max(row["longest s"], seconds)
    wall_header = f"wall on {args.cores} cores"
    print(f"\n{'experiment':12s} {'jobs':>6s} {'train':>6s} {'hours here':>11s} {wall_header:>18s}  jobs by rule")
    total = collections.defaultdict(float)
    for name, row in table.items():
        n_jobs = sum(v for k, v in row.items() if k.startswith("jobs "))
        wall = max(row["core hours"] / args.cores, row["longest s"] / 3600)
        rules = ", ".join(f"{k[5:]} {int(v)}" for k, v in sorted(row.items()) if k.startswith("jobs "))
        print(f"{name:12s} {int(n_jobs):6d} {int(row['jobs train']):6d} {row['hours']:11.1f} {wall:16.2f} h  {rules}")
        for key in ("hours", "core hours"):
            total[key] += row[key]
        total["jobs"] += n_jobs
        total["longest s"] = max(total["longest s"], row["longest s"])
    wall = max(total["core hours"] / args.cores, total["longest s"] / 3600)
    normalised = total["hours"] * 3600 * rate / 1e6  # PFLOP-equivalents at this run's matmul rate
    goal = 100 * 3600 * REFERENCE_RATE[2] / 1e6
    print(f"{'total':12s} {int(total['jobs']):6d} {'':6s} {total['hours']:11.1f} {wall:16.2f} h")
    print(f"normalised: {normalised:.3g} PFLOP-eq (hours x this run's matmul rate); goal <= 100 hours of the "
          f"reference machine = {goal:.3g} PFLOP-eq")

if __name__ == "__main__":
    main()

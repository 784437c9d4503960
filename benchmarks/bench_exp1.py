"""Timings of Experiment 4.1 at the paper's size (2000 particles, split 0.5, d = 2, wavy_plateau).

Prints seconds per training epoch after compilation, compilation time, closed-form solve times, coupling
time per snapshot pair, evaluation time per one-step-ahead W1, and the wall time of one whole job of each
kind through the command line (process start included), each beside its target on 2 CPU cores.
For `jkonet-star` it also prints the FLOPs of one epoch (XLA's cost analysis) and the achieved rate
against this machine's measured float32 matmul rate.

Run: .venv/bin/python benchmarks/bench_exp1.py [--epochs-jobs 1000] [--skip-jobs]
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jkonetstar import metrics, models, pipeline, training
from jkonetstar.io import save_npz

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_rate(n=2048):
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    seconds = median_time(lambda: dot(a, a), 5)
    return 2 * n**3 / seconds


def epoch_timing(spec, data, repeats):
    key = jax.random.key(0)
    params = models.init_params(key, spec, data.source.shape[1])
    optimizer = training.make_optimizer()
    state = training.TrainState(params, optimizer.init(params))
    groups = None
    if spec.interaction:
        order = np.argsort(np.asarray(data.time), kind="stable")
        data = jax.tree.map(lambda a: a[order], data)
        groups = tuple(int(c) for c in np.unique(np.asarray(data.time), return_counts=True)[1])
    epoch = jax.jit(functools.partial(training.train_epoch, spec=spec, optimizer=optimizer, batch_size=250,
                                      groups=groups))
    start = time.perf_counter()
    compiled = epoch.lower(state, key, data).compile()
    compile_seconds = time.perf_counter() - start
    compiled(state, key, data)[1].block_until_ready()
    seconds = median_time(lambda: compiled(state, key, data)[1], repeats)
    # XLA counts a scan body once, so count one minibatch step and multiply by the number of minibatches.
    index, valid = training.minibatch_index(key, len(data.source), 250, groups)
    batch = jax.tree.map(lambda a: a[index[0]], data)
    step = jax.jit(jax.value_and_grad(functools.partial(models.jkonet_star_loss, spec=spec)))
    cost = step.lower(params, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return seconds, compile_seconds, float(cost.get("flops", float("nan"))) * len(index)


def line(name, value, unit, target=None):
    text = f"  {name:<58s} {value:10.4g} {unit}"
    if target is not None:
        text += f"   (target {target})"
    print(text, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs-jobs", type=int, default=1000)
    parser.add_argument("--skip-jobs", action="store_true")
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    start = time.perf_counter()
    population = pipeline.simulate_population(0, potential="wavy_plateau", n_particles=2000, dim=2)
    simulate_seconds = time.perf_counter() - start
    prepared = pipeline.prepare_training_data(population, 0)
    data = jax.tree.map(jnp.asarray, prepared.train)
    print(f"dataset: {prepared.summary['n_train']} train / {prepared.summary['n_test']} test rows, "
          f"{len(data.source)} coupled pairs")

    print("\ndata")
    line("simulate (incl. compilation)", simulate_seconds, "s")
    pair_seconds = prepared.summary["seconds_per_snapshot_pair"]
    line("coupling time per snapshot pair (median, exact LP)", float(np.median(pair_seconds)), "s")

    print("\ntraining epochs (after compilation, median)")
    rate = matmul_rate()
    potential_epoch, potential_compile, _ = epoch_timing(models.get_solver("jkonet-star-potential"), data, 50)
    line("jkonet-star-potential s/epoch", potential_epoch * 1e3, "ms", "<= 12 ms; upstream 21-29 ms")
    line("jkonet-star-potential compilation", potential_compile, "s")
    full_epoch, full_compile, flops = epoch_timing(models.get_solver("jkonet-star"), data, 5)
    line("jkonet-star s/epoch", full_epoch, "s", "<= 1.5 s; upstream 3.7-3.9 s")
    line("jkonet-star compilation", full_compile, "s")
    line("jkonet-star FLOPs per epoch (XLA cost analysis)", flops / 1e9, "GFLOP")
    line("jkonet-star achieved rate", flops / full_epoch / 1e9, "GFLOP/s")
    line("machine float32 matmul rate (2048^2)", rate / 1e9, "GFLOP/s")
    line("jkonet-star share of matmul rate", 100 * flops / full_epoch / rate, "%")

    print("\nclosed-form linear solvers")
    for name in ("jkonet-star-linear-potential", "jkonet-star-linear"):
        spec = models.get_solver(name)
        start = time.perf_counter()
        models.fit_linear(spec, data)
        first = time.perf_counter() - start
        solve = median_time(lambda: models.fit_linear(spec, data)[0]["features"]["axis"], 3)
        line(f"{name} solve (after compilation)", solve, "s")
        line(f"{name} first solve (incl. compilation)", first, "s")

    print("\nevaluation")
    x_test, t_test = prepared.x_test, prepared.t_test
    pop0, pop1 = x_test[t_test == 0], x_test[t_test == 1]
    line("one W1 (1000 vs 1000, exact assignment)", median_time(lambda: metrics.wasserstein1(pop0, pop1), 5) * 1e3,
         "ms")
    params, _ = models.fit_linear(models.get_solver("jkonet-star-linear"), data)
    spec = models.get_solver("jkonet-star-linear")
    pipeline.evaluate(params, spec, x_test, t_test, 0)
    line("one-step W1 evaluation, 5 steps (jkonet-star-linear)",
         median_time(lambda: pipeline.evaluate(params, spec, x_test, t_test, 0)["w1_mean"], 3), "s")

    if args.skip_jobs:
        return
    print(f"\nwhole jobs through `python -m jkonetstar` (process start included; {args.epochs_jobs} epochs, "
          f"evaluation every {args.epochs_jobs // 10})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_npz(tmp / "population.npz", **population)

        def job(*command):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jkonetstar", *command], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - start

        line("simulate job", job("simulate", "--potential", "wavy_plateau", "--out", str(tmp / "p2.npz")), "s")
        line("couplings job", job("couplings", "--population", str(tmp / "population.npz"),
                                  "--out-train", str(tmp / "train.npz"), "--out-test", str(tmp / "test.npz")), "s")
        targets = {"jkonet-star-potential": "<= 20 s; upstream 38 s",
                   "jkonet-star-linear-potential": "<= 5 s; upstream 54-57 s",
                   "jkonet-star-linear": "<= 10 s; upstream 85-89 s"}
        for name, target in targets.items():
            seconds = job("train", "--solver", name, "--train", str(tmp / "train.npz"), "--test", str(tmp / "test.npz"),
                          "--epochs", str(args.epochs_jobs), "--eval-every", str(max(1, args.epochs_jobs // 10)),
                          "--out", str(tmp / f"{name}.npz"))
            line(f"train job {name} (incl. evaluation)", seconds, "s", target)
        line("evaluate job (jkonet-star-linear)",
             job("evaluate", "--model", str(tmp / "jkonet-star-linear.npz"), "--test", str(tmp / "test.npz")), "s")


if __name__ == "__main__":
    main()

"""Timings of Experiment 4.1 at the paper's size (2000 particles, split 0.5, d = 2, wavy_plateau).

Prints seconds per training epoch after compilation, compilation time, closed-form solve times, coupling
time per snapshot pair, evaluation time per one-step-ahead W1, and the wall time of one whole job of each
kind through the command line (process start included). Every figure is printed beside this run's float32
matmul rate and as a normalised cost, seconds x matmul rate (``benchmarks/common.py``), with its target
(issue 12: ``jkonet-star`` <= 0.5 s and ``jkonet-star-potential`` <= 5 ms per epoch, linear train jobs
<= 2 s whole, on the idle 2-core reference machine). For ``jkonet-star`` it also prints the FLOPs of the
pair network per epoch (6 products of a pair block with each 64 x 64 matrix per pair: 2 forward, 4 in the
parameter gradient; the rest of the epoch is O(B) per minibatch) and the rate achieved on them.

Run: .venv/bin/python benchmarks/bench_exp1.py [--epochs-jobs 1000] [--skip-jobs | --only-jobs] [--only-epochs] [--previous 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import ROOT, cores, figure, loaded, matmul_rates, median_time, timed, whole_job_seconds
from jkonetstar import metrics, models, pipeline, training



def pair_flops(params, batch_size):
    """FLOPs of the pair network in one minibatch step: 6 products per pair with each hidden-to-hidden matrix."""
    kernels = [params[f"Dense_{k}"]["kernel"] for k in range(len(params))]
    per_pair = sum(2 * k.shape[0] * k.shape[1] for k in kernels[1:-1])
    return 6 * per_pair * batch_size**2


def epoch_timing(spec, data, repeats):
    """Median (wall, CPU) seconds per epoch after compilation, compilation seconds, pair-network FLOPs per epoch."""
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
    seconds = timed(lambda: compiled(state, key, data)[1], repeats)
    n_batches = len(training.minibatch_index(key, len(data.source), 250, groups)[0])
    flops = pair_flops(params["interaction"], 250) * n_batches if spec.interaction else float("nan")
    return seconds, compile_seconds, flops


def previous_versus_current(data, rounds):
    """Per-epoch (wall, CPU) seconds of the previous and the current epoch, interleaved in this process.

    The previous implementation (``train_epoch`` and ``jkonet_star_loss`` before issue 12) is the reference
    copied in ``tests/test_speed_equivalence.py``; interleaving the two puts them under the same load.
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from test_speed_equivalence import _ref_train_epoch

    key = jax.random.key(0)
    optimizer = training.make_optimizer()
    runs = {}
    for name in ("jkonet-star", "jkonet-star-potential"):
        spec = models.get_solver(name)
        rows, groups = data, None
        if spec.interaction:
            order = np.argsort(np.asarray(data.time), kind="stable")
            rows = jax.tree.map(lambda a: a[order], data)
            groups = tuple(int(c) for c in np.unique(np.asarray(data.time), return_counts=True)[1])
        params = models.init_params(key, spec, data.source.shape[1])
        state = training.TrainState(params, optimizer.init(params))
        for version, fn in (("previous", _ref_train_epoch), ("current", training.train_epoch)):
            epoch = jax.jit(functools.partial(fn, spec=spec, optimizer=optimizer, batch_size=250, groups=groups))
            compiled = epoch.lower(state, key, rows).compile()
            compiled(state, key, rows)[1].block_until_ready()
            runs[name, version] = (compiled, state, rows, 1 if spec.interaction else 20)
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, (compiled, state, rows, repeats) in runs.items():
            wall, cpu = timed(lambda: [compiled(state, key, rows) for _ in range(repeats)][-1][1], 1)
            times[k].append((wall / repeats, cpu / repeats))
    return {k: tuple(float(np.median([t[i] for t in v])) for i in (0, 1)) for k, v in times.items()}


def line(name, value, unit, target=None):
    text = f"  {name:<52s} {value:9.4g} {unit}"
    if target is not None:
        text += f"   (target {target})"
    print(text, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs-jobs", type=int, default=1000)
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--only-epochs", action="store_true", help="time the training epochs only")
    parser.add_argument("--only-jobs", action="store_true", help="time the whole jobs only")
    parser.add_argument("--repeats", type=int, default=5, help="timed jkonet-star epochs (x10 for JKOnet*_V)")
    parser.add_argument("--previous", type=int, default=0, metavar="ROUNDS",
                        help="also time the previous implementation interleaved with the current one, ROUNDS times")
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s), {cores()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    population = pipeline.simulate_population(0, potential="wavy_plateau", n_particles=2000, dim=2)
    simulate_seconds = time.perf_counter() - start
    prepared = pipeline.prepare_training_data(population, 0)
    data = jax.tree.map(jnp.asarray, prepared.train)
    print(f"dataset: {prepared.summary['n_train']} train / {prepared.summary['n_test']} test rows, "
          f"{len(data.source)} coupled pairs")

    rates = [matmul_rates()]
    if args.only_jobs:
        return whole_jobs(population, rates[0][0], args.epochs_jobs)
    if not args.only_epochs:
        print("\ndata")
        figure("simulate (incl. compilation)", simulate_seconds, rates[-1][0])
        pair_seconds = prepared.summary["seconds_per_snapshot_pair"]
        figure("coupling per snapshot pair (median, exact LP)", float(np.median(pair_seconds)), rates[-1][0])

    print("\ntraining epochs (after compilation, median)")
    potential_epoch, potential_compile, _ = epoch_timing(models.get_solver("jkonet-star-potential"), data,
                                                         10 * args.repeats)
    full_epoch, full_compile, flops = epoch_timing(models.get_solver("jkonet-star"), data, args.repeats)
    rates.append(matmul_rates())
    rate, cpu_rate = (float(np.mean([r[i] for r in rates])) for i in (0, 1))
    print(f"  matmul rate (float32 2048^2) before / after the epochs: {rates[0][0]:.1f} / {rates[1][0]:.1f} GFLOP/s "
          f"({rates[0][1]:.1f} / {rates[1][1]:.1f} per CPU second); figures below use the means")
    if loaded():
        print(f"  load average {os.getloadavg()[0]:.1f} on a {os.cpu_count()}-core machine: other processes share "
              "its cores, so wall figures (and their normalised costs) are not comparable; the CPU-time lines "
              "are closer")
    figure("jkonet-star-potential per epoch", potential_epoch[0], rate, 0.005, unit="ms", note="upstream 21-29 ms",
           cpu=(potential_epoch[1], cpu_rate))
    figure("jkonet-star-potential compilation", potential_compile, rate)
    figure("jkonet-star per epoch", full_epoch[0], rate, 0.5, note="upstream 3.7-3.9 s", cpu=(full_epoch[1], cpu_rate))
    figure("jkonet-star compilation", full_compile, rate)
    line("jkonet-star pair-network FLOPs per epoch", flops / 1e9, "GFLOP")
    line("jkonet-star achieved rate on them", flops / full_epoch[0] / 1e9, "GFLOP/s")
    line("jkonet-star share of matmul rate", 100 * flops / full_epoch[0] / 1e9 / rate, "%")
    if args.previous:
        before = matmul_rates()
        compared = previous_versus_current(data, args.previous)
        after = matmul_rates()
        pair_rate, pair_cpu_rate = (float(np.mean([before[i], after[i]])) for i in (0, 1))
        print(f"\nprevious (before issue 12) vs current epoch, interleaved {args.previous} times in this process; "
              f"matmul {before[0]:.1f} / {after[0]:.1f} GFLOP/s ({before[1]:.1f} / {after[1]:.1f} per CPU second)")
        for name, target in (("jkonet-star", 0.5), ("jkonet-star-potential", 0.005)):
            unit = "ms" if target < 0.1 else "s"
            for version in ("previous", "current"):
                wall, cpu = compared[name, version]
                figure(f"{name} per epoch, {version}", wall, pair_rate, target, unit=unit, cpu=(cpu, pair_cpu_rate))
            print(f"  {name}: current / previous = {compared[name, 'current'][0] / compared[name, 'previous'][0]:.2f} "
                  f"(wall), {compared[name, 'current'][1] / compared[name, 'previous'][1]:.2f} (CPU)")
    if args.only_epochs:
        return

    print("\nclosed-form linear solvers")
    for name in ("jkonet-star-linear-potential", "jkonet-star-linear"):
        spec = models.get_solver(name)
        start = time.perf_counter()
        models.fit_linear(spec, data)
        first = time.perf_counter() - start
        solve = median_time(lambda: models.fit_linear(spec, data)[0]["features"]["axis"], 3)
        figure(f"{name} solve", solve, rate)
        figure(f"{name} first solve (incl. compilation)", first, rate)

    print("\nevaluation")
    x_test, t_test = prepared.x_test, prepared.t_test
    pop0, pop1 = x_test[t_test == 0], x_test[t_test == 1]
    figure("one W1 (1000 vs 1000, exact assignment)", median_time(lambda: metrics.wasserstein1(pop0, pop1), 5),
           rate, unit="ms")
    params, _ = models.fit_linear(models.get_solver("jkonet-star-linear"), data)
    spec = models.get_solver("jkonet-star-linear")
    pipeline.evaluate(params, spec, x_test, t_test, 0)
    figure("one-step W1 evaluation, 5 steps (linear)",
           median_time(lambda: pipeline.evaluate(params, spec, x_test, t_test, 0)["w1_mean"], 3), rate)

    if args.skip_jobs:
        return
    whole_jobs(population, rate, args.epochs_jobs)


def whole_jobs(population, rate, epochs):
    """Each stage as the workflow runs it, one process per job (``python -m jkonetstar``, the same ``jobs``
    functions as the rules; process start, imports and the shared compilation cache included)."""
    print(f"\nwhole jobs through `python -m jkonetstar` (process start included; {epochs} epochs, "
          f"evaluation every {epochs // 10})")
    targets = {"jkonet-star-potential": (20.0, "upstream 38 s"),
               "jkonet-star-linear-potential": (2.0, "upstream 54-57 s"),
               "jkonet-star-linear": (2.0, "upstream 85-89 s")}
    mlp = ["--epochs", epochs, "--eval-every", max(1, epochs // 10)]
    seconds = whole_job_seconds(int(np.sum(population["t"] == 0)),
                                {name: mlp if name == "jkonet-star-potential" else [] for name in targets},
                                evaluated="jkonet-star-linear")
    figure("simulate job", seconds["simulate"], rate)
    figure("couplings job", seconds["couplings"], rate)
    for name, (target, note) in targets.items():
        figure(f"train job {name}", seconds[f"train {name}"], rate, target, note=f"incl. evaluation; {note}")
    figure("evaluate job (jkonet-star-linear)", seconds["evaluate"], rate, 2.0, note="issue 10")

if __name__ == "__main__":
    main()

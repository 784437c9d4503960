"""Times one training epoch of the JKOnet baselines beside JKOnet*_V on the Experiment 4.1 dataset.

Data: ``simulate(key(0), potential="wavy_plateau", n_particles=2000, dim=2)`` (T = 5, dt = 0.01); the
first 1000 trajectories are the train split. The baselines train on them as trajectories (minibatches of
250 trajectories, 100 inner Adam steps, Sinkhorn eps = 1: 20 outer updates per epoch); JKOnet*_V
(``jkonet-star-potential``) trains on the identity couplings of the same particles (weights 1/n per
snapshot pair, rho = 1, grad rho = 0), minibatches of 250 coupling rows (20 updates per epoch).

Each method is trained with its library entry point (``fit_jkonet`` / ``training.fit``), so compilation is
timed apart, ahead of epoch 1. Printed per method: compile seconds, the median wall seconds per epoch over
the timed epochs (all but the first), the process CPU seconds per epoch over the same epochs (a check on
a shared machine, where wall time also counts waiting for a core), and the wall ratio to JKOnet*_V. Run,
e.g.:

    taskset -c 0,1 .venv/bin/python benchmarks/bench_baselines.py [--epochs 4] [--monge-gap] [--previous 3]

The baselines' epoch is thousands of small sequential ops; XLA's CPU runtime spreads them over its thread
pool, which costs more than it gains here: pinned to one core (``taskset -c 0``) an epoch takes 20-25%
less wall and CPU time than on two (measured back to back), so two 1-core runs beat one 2-core run.

Every figure is also printed beside this run's float32 matmul rate, measured on the cores the process may
use (one when pinned), and as a normalised cost, seconds x matmul rate (``benchmarks/common.py``), with the
target of issue 12: ``jkonet`` and ``jkonet-vanilla`` at most 1.0 s per epoch on one core of the reference
machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import REFERENCE_RATE, cores, loaded, matmul_rates, timed
from jkonetstar import baselines
from jkonetstar.baselines import fit_jkonet
from jkonetstar.models import get_solver
from jkonetstar.simulate import simulate
from jkonetstar.training import TrainingData, fit


def identity_couplings(snapshots: np.ndarray) -> TrainingData:
    """Pairs particle i at t with particle i at t + 1, for every t; weights 1/n per snapshot pair."""
    n_times, n, dim = snapshots.shape
    source = snapshots[:-1].reshape(-1, dim)
    target = snapshots[1:].reshape(-1, dim)
    time_label = np.repeat(np.arange(1, n_times, dtype=np.int32), n)
    m = len(source)
    return TrainingData(jnp.asarray(source), jnp.asarray(target), jnp.asarray(time_label),
                        jnp.full((m,), 1.0 / n), jnp.ones((m,)), jnp.zeros((m, dim)))


def timed_run(train, epochs: int) -> dict:
    """Runs ``train(epochs, evaluate)``; returns compile s, median wall s/epoch and CPU s/epoch after epoch 1.

    A run that diverged in epoch 1 reports that epoch's wall time and no CPU time.
    """
    marks: list[float] = []

    def evaluate(params) -> float:  # called after every epoch (eval_every=1): marks CPU time between epochs
        marks.append(time.process_time())
        return float("nan")

    result = train(epochs, evaluate)
    walls = [row["seconds"] for row in result.history[1:]] or [row["seconds"] for row in result.history]
    cpu = np.diff(marks[: len(result.history)]) if len(marks) > 1 else [float("nan")]
    return dict(compile=result.compile_seconds, wall=float(np.median(walls)) if walls else float("nan"),
                cpu=float(np.median(cpu)), status=result.status)


def previous_versus_current(snapshots, variants, rounds, batch_size, inner_steps):
    """Per-epoch (wall, CPU) seconds of each baseline's epoch before issue 12 (the inner steps recompute
    everything in the backward pass: ``_REMAT_POLICY = None``) and now, interleaved in this process."""
    from jkonetstar.models import MLP
    from jkonetstar.training import TrainState, make_optimizer

    snapshots = jnp.asarray(snapshots)
    params = {"potential": MLP((64, 64)).init(jax.random.key(1), jnp.zeros(snapshots.shape[-1]))["params"]}
    optimizer = make_optimizer()
    state = TrainState(params, optimizer.init(params))
    key = jax.random.key(0)
    current_policy = baselines._REMAT_POLICY
    runs = {}
    for variant in variants:
        for version, policy in (("previous", None), ("current", current_policy)):
            baselines._REMAT_POLICY = policy  # read when the epoch is traced
            epoch = jax.jit(functools.partial(baselines.train_epoch_jkonet, spec=baselines.get_baseline(variant),
                                              optimizer=optimizer, batch_size=batch_size, inner_steps=inner_steps))
            compiled = epoch.lower(state, key, snapshots).compile()
            jax.block_until_ready(compiled(state, key, snapshots))
            runs[variant, version] = compiled
    baselines._REMAT_POLICY = current_policy
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, compiled in runs.items():
            times[k].append(timed(lambda: compiled(state, key, snapshots)[1], 1))
    return {k: tuple(float(np.median([t[i] for t in v])) for i in (0, 1)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per baseline (the first is not timed)")
    parser.add_argument("--star-epochs", type=int, default=50, help="epochs of jkonet-star-potential")
    parser.add_argument("--monge-gap", action="store_true", help="also time jkonet-monge-gap (slow)")
    parser.add_argument("--inner-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--previous", type=int, default=0, metavar="ROUNDS",
                        help="also time each baseline's epoch before issue 12 interleaved with the current one")
    args = parser.parse_args()

    snapshots = np.asarray(simulate(jax.random.key(0), potential="wavy_plateau", n_particles=2000, dim=2))[:, :1000]
    print(f"data: {snapshots.shape[0]} snapshots x {snapshots.shape[1]} train trajectories x d={snapshots.shape[2]}; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(os.sched_getaffinity(0))} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    rates = [matmul_rates()]
    couplings = identity_couplings(snapshots)
    rows = {"jkonet-star-potential": timed_run(
        lambda epochs, evaluate: fit(jax.random.key(0), get_solver("jkonet-star-potential"), couplings, epochs=epochs,
                                     batch_size=args.batch_size, eval_every=1, evaluate=evaluate),
        args.star_epochs)}
    variants = ["jkonet", "jkonet-vanilla"] + (["jkonet-monge-gap"] if args.monge_gap else [])
    for variant in variants:
        rows[variant] = timed_run(
            lambda epochs, evaluate, variant=variant: fit_jkonet(
                jax.random.key(0), variant, snapshots, epochs=epochs, batch_size=args.batch_size,
                inner_steps=args.inner_steps, eval_every=1, evaluate=evaluate),
            args.epochs)

    rates.append(matmul_rates())
    rate, cpu_rate = (float(np.mean([r[i] for r in rates])) for i in (0, 1))
    print(f"matmul rate (float32 2048^2) before / after: {rates[0][0]:.1f} / {rates[1][0]:.1f} GFLOP/s "
          f"({rates[0][1]:.1f} / {rates[1][1]:.1f} per CPU second); normalised costs use the means, in GFLOP-eq")
    if loaded():
        print(f"load average {os.getloadavg()[0]:.1f} on a {os.cpu_count()}-core machine: other processes share "
              "its cores, so wall figures (and their normalised costs) are not comparable; the CPU columns are closer")
    targets = {"jkonet": 1.0, "jkonet-vanilla": 1.0}
    reference = REFERENCE_RATE[1]
    star = rows["jkonet-star-potential"]["wall"]
    print(f"{'method':24s} {'compile s':>10s} {'wall s/epoch':>13s} {'CPU s/epoch':>12s} {'wall ratio':>11s} "
          f"{'wall x rate':>12s} {'CPU x rate':>11s}  target (1 core)  status")
    for name, row in rows.items():
        target = targets.get(name)
        verdict = ""
        if target is not None:
            met = "no verdict (loaded)" if loaded() else "met" if row["wall"] * rate <= target * reference else "MISSED"
            verdict = f"<= {target:g} s = {target * reference:g}: {met}"
        print(f"{name:24s} {row['compile']:10.2f} {row['wall']:13.4f} {row['cpu']:12.4f} {row['wall'] / star:11.1f} "
              f"{row['wall'] * rate:12.4g} {row['cpu'] * cpu_rate:11.4g}  {verdict:15s}  {row['status']}")
    if cores() != 1:
        print(f"(run on {cores()} cores: the targets are for one core, taskset -c 0)")
    if args.previous:
        before = matmul_rates()
        compared = previous_versus_current(snapshots, variants, args.previous, args.batch_size, args.inner_steps)
        after = matmul_rates()
        rate, cpu_rate = (float(np.mean([before[i], after[i]])) for i in (0, 1))
        print(f"previous (before issue 12) vs current epoch, interleaved {args.previous} times in this process; matmul "
              f"{rate:.1f} GFLOP/s ({cpu_rate:.1f} per CPU second)")
        for variant in variants:
            (wall_0, cpu_0), (wall_1, cpu_1) = compared[variant, "previous"], compared[variant, "current"]
            print(f"{variant:24s} previous {wall_0:.4f} s/epoch ({wall_0 * rate:.4g} GFLOP-eq; CPU {cpu_0:.4f} s, "
                  f"{cpu_0 * cpu_rate:.4g}), current {wall_1:.4f} s/epoch ({wall_1 * rate:.4g}; CPU {cpu_1:.4f} s, "
                  f"{cpu_1 * cpu_rate:.4g}): current / previous {wall_1 / wall_0:.2f} wall, {cpu_1 / cpu_0:.2f} CPU")
    print(f"load average after: {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()

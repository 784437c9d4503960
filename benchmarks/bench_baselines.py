"""Times one training epoch of the JKOnet baselines beside JKOnet*_V on the Experiment 4.1 dataset.

Data: ``simulate(key(0), potential="wavy_plateau", n_particles=2000, dim=2)`` (T = 5, dt = 0.01); the
first 1000 trajectories are the train split. The baselines see them as trajectories (minibatches of 250
trajectories, 100 inner Adam steps, Sinkhorn eps = 1); JKOnet*_V (``jkonet-star-potential``) sees the
identity couplings of the same particles (weights 1/n per snapshot pair, rho = 1, grad rho = 0),
minibatches of 250 coupling rows. Prints compile seconds, seconds per epoch after compilation (median
over the timed epochs) and the ratio to JKOnet*_V. Run, e.g. on 2 cores:

    taskset -c 0,1 .venv/bin/python benchmarks/bench_baselines.py [--epochs 3] [--monge-gap]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from jkonetstar.baselines import fit_jkonet
from jkonetstar.models import get_solver
from jkonetstar.simulate import simulate
from jkonetstar.training import TrainingData, fit


def identity_couplings(snapshots: np.ndarray) -> TrainingData:
    """Pairs particle i at t with particle i at t + 1, for every t; weights 1/n per snapshot pair."""
    n_times, n, dim = snapshots.shape
    source = snapshots[:-1].reshape(-1, dim)
    target = snapshots[1:].reshape(-1, dim)
    time = np.repeat(np.arange(1, n_times, dtype=np.int32), n)
    m = len(source)
    return TrainingData(jnp.asarray(source), jnp.asarray(target), jnp.asarray(time),
                        jnp.full((m,), 1.0 / n), jnp.ones((m,)), jnp.zeros((m, dim)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per baseline (after compilation)")
    parser.add_argument("--star-epochs", type=int, default=50, help="timed epochs of jkonet-star-potential")
    parser.add_argument("--monge-gap", action="store_true", help="also time jkonet-monge-gap (slow)")
    parser.add_argument("--inner-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()

    snapshots = np.asarray(simulate(jax.random.key(0), potential="wavy_plateau", n_particles=2000, dim=2))[:, :1000]
    print(f"data: {snapshots.shape[0]} snapshots x {snapshots.shape[1]} train trajectories x d={snapshots.shape[2]}; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(os.sched_getaffinity(0))} cores available")

    star = fit(jax.random.key(0), get_solver("jkonet-star-potential"), identity_couplings(snapshots),
               epochs=args.star_epochs + 1, batch_size=args.batch_size, eval_every=10**6)
    star_seconds = float(np.median([row["seconds"] for row in star.history[1:]]))
    rows = [("jkonet-star-potential", star.compile_seconds, star_seconds, star.status)]

    variants = ["jkonet", "jkonet-vanilla"] + (["jkonet-monge-gap"] if args.monge_gap else [])
    for variant in variants:
        result = fit_jkonet(jax.random.key(0), variant, snapshots, epochs=args.epochs + 1, batch_size=args.batch_size,
                            inner_steps=args.inner_steps, eval_every=10**6)
        timed = [row["seconds"] for row in result.history[1:]] or [result.history[0]["seconds"]]
        rows.append((variant, result.compile_seconds, float(np.median(timed)), result.status))

    print(f"{'method':24s} {'compile s':>10s} {'s/epoch':>10s} {'ratio vs JKOnet*_V':>20s}  status")
    for name, compile_seconds, seconds, status in rows:
        print(f"{name:24s} {compile_seconds:10.2f} {seconds:10.4f} {seconds / star_seconds:20.1f}  {status}")


if __name__ == "__main__":
    main()

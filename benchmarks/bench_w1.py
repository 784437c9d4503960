"""Times exact W1 solvers (Euclidean cost, uniform weights) at n = m = 1000, d = 2.

For each scenario prints the median seconds per call of each candidate, its ratio to POT
``ot.emd2`` and the largest absolute difference of its value from ``ot.emd2``. Run:

    .venv/bin/python benchmarks/bench_w1.py [--n 1000] [--dim 2] [--repeats 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from jkonetstar.metrics import wasserstein1


def w1_pot_emd2(x: np.ndarray, y: np.ndarray) -> float:
    cost = ot.dist(x, y, metric="euclidean")
    return float(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=1_000_000))


def w1_linear_sum_assignment(x: np.ndarray, y: np.ndarray) -> float:
    cost = cdist(x, y)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


SOLVERS = {
    "pot_emd2": w1_pot_emd2,
    "scipy_linear_sum_assignment": w1_linear_sum_assignment,
    "jkonetstar.metrics.wasserstein1": wasserstein1,
}


def scenarios(rng: np.random.Generator, n: int, dim: int) -> dict:
    def uniform():
        return rng.uniform(-4, 4, (n, dim))

    def one_step():
        # What the evaluation compares: a predicted one-step population against the observed next
        # snapshot, i.e. two small, independent perturbations of the same particles, in shuffled order.
        x = uniform()
        drift = -0.04 * x
        return x + drift + 0.02 * rng.normal(size=x.shape), rng.permutation(x + drift + 0.02 * rng.normal(size=x.shape))

    return {
        "one step (evaluation-like)": one_step,
        "same law, independent samples": lambda: (uniform(), uniform()),
        "different laws (uniform vs normal)": lambda: (uniform(), rng.normal(size=(n, dim))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    for scenario, sample in scenarios(rng, args.n, args.dim).items():
        print(f"n = m = {args.n}, d = {args.dim}, {scenario}, median of {args.repeats} calls")
        pairs = [sample() for _ in range(args.repeats)]
        reference = [w1_pot_emd2(x, y) for x, y in pairs]
        seconds = {}
        for name, solver in SOLVERS.items():
            solver(*pairs[0])  # warm-up
            times, errors = [], []
            for (x, y), ref in zip(pairs, reference):
                start = time.perf_counter()
                value = solver(x, y)
                times.append(time.perf_counter() - start)
                errors.append(abs(value - ref))
            seconds[name] = float(np.median(times))
            print(
                f"  {name:34s} {1e3 * seconds[name]:9.2f} ms/call  "
                f"ratio vs emd2 {seconds[name] / seconds['pot_emd2']:6.3f}  max |diff| {max(errors):.2e}"
            )


if __name__ == "__main__":
    main()

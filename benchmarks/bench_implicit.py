"""The implicit prediction step solved by plain iteration (picard) and by Anderson acceleration (anderson).

For each potential it simulates Exp. 4.1's data (N = 1000 per snapshot, T = 5, dt = 0.01, seed 0, exact couplings),
trains each solver briefly with the configured defaults (``--epochs``), then takes the implicit step from every
observed test snapshot with both solvers (same tolerance 1e-5 and cap 200) and prints, per solver: evaluations of
the drift G per transition, seconds per transition (after compilation), how many transitions converged, the
largest particle error against a reference fixed point (the plain iteration to a tolerance of 1e-6, at most 1000
iterations, float32's floor) on the transitions where that reference converged, and the one-step W1 of each. The matmul rate of the same run is printed first and every time beside it as a normalised cost
(seconds x matmul rate, GFLOP-equivalents), since this machine's speed varies.

Run: .venv/bin/python benchmarks/bench_implicit.py [--potentials wavy_plateau flowers] [--epochs 30]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from common import matmul_rate
from jkonetstar import metrics, models, pipeline

SOLVERS = {"jkonet-star-potential": {"epochs": 200, "batch_size": 250},
           "jkonet-star": {"epochs": 30, "batch_size": 100}}
"""The methods compared and their training budget (config/config.yaml's batch sizes; fewer epochs)."""


def transition_steps(params, spec, x, label, solver, tolerance, max_iterations):
    """One implicit step from ``x`` to ``label``: ``(y, residual, evaluations of G, seconds)``, compiled first, timed
    on a second call (:func:`jkonetstar.pipeline.make_predictor`, the evaluation's own predictor)."""
    predict = pipeline.make_predictor(params, spec, predict_step="implicit", implicit_solver=solver,
                                      implicit_tolerance=tolerance, implicit_max_iterations=max_iterations)
    predict.transition(jax.random.key(0), x, label)
    start = time.perf_counter()
    y = predict.transition(jax.random.key(0), x, label)
    return y, predict.residuals[-1], predict.iterations[-1], time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--potentials", nargs="*", default=["wavy_plateau", "styblinski_tang", "flowers"])
    parser.add_argument("--methods", nargs="*", default=list(SOLVERS), choices=list(SOLVERS))
    parser.add_argument("--epochs", type=int, default=None, help="override every method's training epochs")
    args = parser.parse_args(argv)
    rate = matmul_rate()
    print(f"matmul rate (2048^2 float32) of this run: {rate:.1f} GFLOP/s", flush=True)
    print(f"{'potential':16s} {'method':22s} {'solver':8s} {'G evals/step':>12s} {'s/step':>8s} {'GFLOP-eq':>9s} "
          f"{'converged':>9s} {'max error':>10s} {'W1 mean':>9s}")
    totals = {solver: [0, 0.0] for solver in models.IMPLICIT_SOLVERS}
    for potential in args.potentials:
        population = pipeline.simulate_population(0, potential=potential, n_particles=1000, dim=2)
        prepared = pipeline.prepare_training_data(population, 0, block_size=1000, min_det=1e-4)
        labels = np.unique(prepared.t_test)
        for method in args.methods:
            spec = pipeline.get_method(method)
            budget = {**SOLVERS[method], **({"epochs": args.epochs} if args.epochs else {})}
            result = pipeline.train(spec, prepared.train, prepared.x_test, prepared.t_test, 0, learning_rate=1e-3,
                                    eval_every=budget["epochs"], **budget)
            transitions = [(np.asarray(prepared.x_test[prepared.t_test == source], np.float32), int(target))
                           for source, target in zip(labels[:-1], labels[1:])]
            references = [transition_steps(result.params, spec, x, target, "picard", 1e-6, 1000)[:2]
                          for x, target in transitions]
            for solver in models.IMPLICIT_SOLVERS:
                evaluations, seconds, errors, w1, converged = [], [], [], [], 0
                for (x, target), (reference, reference_residual) in zip(transitions, references):
                    y, residual, iterations, spent = transition_steps(result.params, spec, x, target, solver, 1e-5, 200)
                    evaluations.append(iterations)
                    seconds.append(spent)
                    converged += residual <= 1e-5
                    if reference_residual <= 1e-6:  # else the plain iteration oscillates: no reference
                        errors.append(float(np.max(np.linalg.norm(y - reference, axis=1))))
                    w1.append(metrics.wasserstein1(y, prepared.x_test[prepared.t_test == target]))
                totals[solver][0] += sum(evaluations)
                totals[solver][1] += sum(seconds)
                mean_seconds = float(np.mean(seconds))
                print(f"{potential:16s} {method:22s} {solver:8s} {np.mean(evaluations):12.1f} {mean_seconds:8.4f} "
                      f"{mean_seconds * rate:9.2f} {f'{converged}/{len(w1)}':>9s} "
                      f"{(f'{max(errors):.2e}' if errors else 'n/a'):>10s} {np.mean(w1):9.5f}", flush=True)
    (picard_evals, picard_seconds), (anderson_evals, anderson_seconds) = totals["picard"], totals["anderson"]
    print(f"all transitions: picard {picard_evals} G evaluations in {picard_seconds:.3f} s "
          f"({picard_seconds * rate:.1f} GFLOP-eq), anderson {anderson_evals} in {anderson_seconds:.3f} s "
          f"({anderson_seconds * rate:.1f} GFLOP-eq): {picard_seconds / anderson_seconds:.1f}x faster")


if __name__ == "__main__":
    main()

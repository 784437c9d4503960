"""Command line: ``python -m jkonetstar simulate|couplings|train|evaluate ...``, one stage by hand.

Example, one run of Experiment 4.1 for one potential::

    python -m jkonetstar simulate --potential wavy_plateau --out run/population.npz
    python -m jkonetstar couplings --population run/population.npz --out-train run/train.npz --out-test run/test.npz
    python -m jkonetstar train --solver jkonet-star-potential --train run/train.npz --test run/test.npz \\
        --out run/model.npz --history run/history.csv
    python -m jkonetstar evaluate --model run/model.npz --test run/test.npz --out run/metrics.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jkonetstar", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="simulate a population time course (SDE, Euler-Maruyama)")
    sim.add_argument("--potential", required=True)
    sim.add_argument("--interaction", default="none")
    sim.add_argument("--beta", type=float, default=0.0, help="diffusion coefficient (temperature)")
    sim.add_argument("--n-particles", type=int, default=2000)
    sim.add_argument("--dim", type=int, default=2)
    sim.add_argument("--n-steps", type=int, default=5)
    sim.add_argument("--dt", type=float, default=0.01)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--independent", action="store_true",
                     help="every snapshot from its own population (no particle in two snapshots): "
                          "couple with --pairing independent")
    sim.add_argument("--out", required=True, help="output .npz with x, t, particle")

    cpl = commands.add_parser("couplings", help="split, couple consecutive snapshots, fit densities")
    cpl.add_argument("--population", required=True, help=".npz with x [n, d], t [n] (and particle [n])")
    cpl.add_argument("--test-ratio", type=float, default=0.5)
    cpl.add_argument("--split-by", choices=["trajectory", "population"], default="trajectory")
    cpl.add_argument("--pairing", default="paired",
                     help="paired, shuffled (paired data, order lost) or independent (from simulate --independent)")
    cpl.add_argument("--test-population", default=None,
                     help="a pre-made test split (.npz with x, t); --population is then the training part")
    cpl.add_argument("--method", choices=["exact", "sinkhorn"], default="exact")
    cpl.add_argument("--epsilon", type=float, default=None)
    cpl.add_argument("--block-size", type=int, default=1000)
    cpl.add_argument("--sparsify-relax", action="store_true",
                     help="halve the 1/(10 n) threshold of a diffuse plan until entries pass, instead of failing")
    cpl.add_argument("--n-components", type=int, default=10)
    cpl.add_argument("--seed", type=int, default=0)
    cpl.add_argument("--out-train", required=True)
    cpl.add_argument("--out-test", required=True)

    trn = commands.add_parser("train", help="fit a JKOnet* solver on couplings")
    trn.add_argument("--solver", required=True)
    trn.add_argument("--train", required=True, help="couplings .npz from the couplings command")
    trn.add_argument("--test", required=True, help="test population .npz from the couplings command")
    trn.add_argument("--epochs", type=int, default=1000)
    trn.add_argument("--batch-size", type=int, default=250)
    trn.add_argument("--learning-rate", type=float, default=1e-3)
    trn.add_argument("--eval-every", type=int, default=100)
    trn.add_argument("--tau", type=float, default=1.0)
    trn.add_argument("--seed", type=int, default=0)
    trn.add_argument("--out", required=True, help="model .npz")
    trn.add_argument("--history", default=None, help="history .csv")

    evl = commands.add_parser("evaluate", help="one-step-ahead (and cumulative) W1 on the test population")
    evl.add_argument("--model", required=True)
    evl.add_argument("--test", required=True)
    evl.add_argument("--tau", type=float, default=1.0)
    evl.add_argument("--seed", type=int, default=0)
    evl.add_argument("--cumulative", action="store_true")
    evl.add_argument("--out", default=None, help="metrics .json (printed when omitted)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Heavy imports after parsing, so --help is instant.
    import json

    import pandas as pd

    from jkonetstar import models, pipeline
    from jkonetstar.io import atomic_path, load_npz, save_json, save_npz
    from jkonetstar.training import TrainingData

    try:
        if args.command == "simulate":
            population = pipeline.simulate_population(
                args.seed, potential=args.potential, interaction=args.interaction, beta=args.beta,
                n_particles=args.n_particles, dim=args.dim, n_steps=args.n_steps, dt=args.dt,
                independent=args.independent)
            save_npz(args.out, **population)
        elif args.command == "couplings":
            population = load_npz(args.population, required=("x", "t"))
            test = load_npz(args.test_population, required=("x", "t")) if args.test_population else None
            prepared = pipeline.prepare_training_data(
                population, args.seed, test_ratio=args.test_ratio, split_by=args.split_by, pairing=args.pairing,
                method=args.method, epsilon=args.epsilon, block_size=args.block_size, n_components=args.n_components,
                sparsify_relax=args.sparsify_relax, test_population=test)
            prepared.train.save(args.out_train)
            save_npz(args.out_test, x=prepared.x_test, t=prepared.t_test)
            print(json.dumps(prepared.summary))
        elif args.command == "train":
            spec = models.get_solver(args.solver)
            data = TrainingData.load(args.train)
            test = load_npz(args.test, required=("x", "t"))
            result = pipeline.train(spec, data, test["x"], test["t"], args.seed, epochs=args.epochs,
                                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                                    eval_every=args.eval_every, tau=args.tau, progress=print)
            models.save_params(args.out, result.params, spec)
            if args.history:
                with atomic_path(args.history) as tmp:
                    pd.DataFrame(result.history).to_csv(tmp, index=False)
            print(f"status: {result.status}")
        elif args.command == "evaluate":
            params, spec = models.load_params(args.model)
            test = load_npz(args.test, required=("x", "t"))
            scores = pipeline.evaluate(params, spec, test["x"], test["t"], args.seed, tau=args.tau,
                                       cumulative=args.cumulative)
            if args.out:
                save_json(args.out, scores)
            print(json.dumps(scores, indent=2))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())

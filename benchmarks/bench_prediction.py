"""Exp. 4.1 at the paper's settings: one-step EMD of JKOnet*_V with each prediction step, and the other pair.

For every potential (N = 2000 split 0.5 by trajectory, T = 5, dt = 0.01, seed 0, exact couplings in blocks of
1000, 1000 epochs, batch 250, lr 1e-3, tau = 1), it trains JKOnet*_V twice:

- with the gradient at the target (the paper's loss) and scores the *same* model with the explicit step (the
  published evaluation) and the implicit step (the fixed point of the JKO step the loss was trained on);
- with the gradient at the source (``gradient_at: source``) and scores it with the explicit step, the other
  consistent pair;

and prints the final one-step EMD of each, the ratio implicit / explicit, the count of potentials where the
implicit step wins, the geometric mean of the ratios, and the implicit W1 at its best evaluation (to show where
it rises after early epochs). ``--variants`` adds training variants (e.g. a cosine learning-rate schedule).
The matmul rate of the same run is printed first (this machine's speed varies).

Run: .venv/bin/python benchmarks/bench_prediction.py [--epochs 1000] [--potentials sphere flat] [--out file.csv]
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jkonetstar import energies, models, pipeline


def matmul_rate(n=2048):
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times))


VARIANTS = {
    "target": {},  # the paper's loss; scored with both steps
    "source": {"gradient_at": "source"},  # the other consistent pair; scored with the explicit step
}
OPTIONAL_VARIANTS = {
    "cosine": {"lr_schedule": "cosine"},
    "validation": {"select": "validation"},  # keep the best evaluation on 10 % held-out training rows
    "cosine+validation": {"lr_schedule": "cosine", "select": "validation"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--potentials", nargs="*", default=energies.potential_names())
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(OPTIONAL_VARIANTS))
    parser.add_argument("--only-variants", action="store_true", help="skip the two default variants")
    parser.add_argument("--out", default=None, help="also write the tidy results to this CSV")
    args = parser.parse_args(argv)
    print(f"matmul rate (2048^2 float32) of this run: {matmul_rate() / 1e9:.1f} GFLOP/s", flush=True)
    spec = models.get_solver("jkonet-star-potential")
    variants = {**({} if args.only_variants else VARIANTS), **{name: OPTIONAL_VARIANTS[name] for name in args.variants}}
    rows = []
    for potential in args.potentials:
        population = pipeline.simulate_population(0, potential=potential, n_particles=2000, dim=2)
        prepared = pipeline.prepare_training_data(population, 0, block_size=1000, min_det=1e-4)
        for variant, extra in variants.items():
            start = time.perf_counter()
            result = pipeline.train(spec, prepared.train, prepared.x_test, prepared.t_test, 0, epochs=args.epochs,
                                    batch_size=250, learning_rate=1e-3, eval_every=args.eval_every, **extra)
            seconds = time.perf_counter() - start
            steps = ["explicit", "implicit"] if variant != "source" else ["explicit"]
            history = pd.DataFrame(result.history).dropna(subset=["w1"])
            for step in steps:
                scores = pipeline.evaluate(result.params, spec, prepared.x_test, prepared.t_test, 0,
                                           predict_options={"predict_step": step})
                column = "w1" if step == "implicit" else "w1_explicit"
                best = history.loc[history[column].idxmin()] if column in history and len(history) else None
                rows.append({"potential": potential, "training": variant, "predict_step": step,
                             "w1_mean": scores["w1_mean"], "converged": scores.get("implicit_converged", True),
                             "best_w1": float(best[column]) if best is not None else np.nan,
                             "best_epoch": int(best["epoch"]) if best is not None else -1,
                             "train_seconds": seconds, "status": result.status})
            print(f"{potential:16s} {variant:7s} " + "  ".join(
                f"{r['predict_step']} {r['w1_mean']:.4g} (best {r['best_w1']:.4g} @ {r['best_epoch']})"
                for r in rows if r["potential"] == potential and r["training"] == variant)
                + f"  [{seconds:.1f} s]", flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    wide = table.pivot_table(index="potential", columns=["training", "predict_step"], values="w1_mean")
    wide = wide.reindex(args.potentials)
    wide.columns = [f"{t}/{s}" for t, s in wide.columns]
    pd.set_option("display.width", 200)
    print("\nFinal one-step EMD (W1, mean over the 5 transitions), JKOnet*_V at the paper's settings")
    print("<training>/<step>: target = gradient at the target (paper loss), source = at the source; others: --variants")
    print(wide.to_string(float_format=lambda v: f"{v:.4g}"))

    def compare(numerator, denominator, text):
        if numerator not in wide or denominator not in wide:
            return
        ratio = (wide[numerator] / wide[denominator]).to_numpy(dtype=float)
        finite = np.isfinite(ratio) & (ratio > 0)
        print(f"{text}: lower on {int(np.sum(ratio[finite] < 1))} of {int(finite.sum())} potentials; geometric mean "
              f"of {numerator} / {denominator}: {np.exp(np.mean(np.log(ratio[finite]))):.3g}")

    print()
    compare("target/implicit", "target/explicit", "implicit vs explicit step, same trained model")
    compare("target/implicit", "source/explicit", "consistent pairs: (target, implicit) vs (source, explicit)")
    for variant in args.variants:
        compare(f"{variant}/implicit", "target/implicit", f"{variant} vs the paper's training, implicit step")
    return 0


if __name__ == "__main__":
    sys.exit(main())

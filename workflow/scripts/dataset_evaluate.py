"""Snakemake adapter: one-step-ahead W1 of a run on a real dataset, its predictions and learned potential."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to, share_compilation_cache  # noqa: E402

share_compilation_cache()  # before JAX compiles: jobs of a stage reuse compiled programs
log = log_to(snakemake.log[0], "dataset_evaluate")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jkonetstar import pipeline, plots  # noqa: E402
from jkonetstar.io import atomic_path, load_json, load_npz, save_json  # noqa: E402

w = snakemake.wildcards
seed, tau = int(w.seed), float(snakemake.params.tau)
settings = snakemake.params.plots
params, spec = pipeline.load_model(snakemake.input.model)  # a JKOnet* solver or a JKOnet baseline
predict_options = snakemake.params.predict_options
fit = load_json(snakemake.input.fit)
test = load_npz(snakemake.input.test, required=("x", "t"))
population = load_npz(snakemake.input.population, required=("x", "t", "time_values"))
time_values = population["time_values"]

# One step from every observed test snapshot: scored here and drawn below.
steps = pipeline.one_step(params, spec, test["x"], test["t"], seed, tau=tau, predict_options=predict_options)
_, observed, predicted, _ = steps  # and the fixed-point diagnostics, which evaluate() records
scores = pipeline.evaluate(params, spec, test["x"], test["t"], seed, tau=tau, predict_options=predict_options,
                           steps=steps)
labels = np.unique(test["t"])
log.info("one-step W1 per step %s (training status %s)", np.round(scores["w1_per_step"], 5).tolist(), fit["status"])
save_json(snakemake.output.metrics, {
    "dataset": w.dataset,
    "solver": w.solver,
    "seed": seed,
    "dim": int(test["x"].shape[1]),
    **fit,
    **scores,
    "target_labels": [int(v) for v in labels[1:]],
    "target_time_values": [int(time_values[v]) for v in labels[1:]],
})



def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def two_columns(points):
    points = np.asarray(points)
    return points if points.shape[1] >= 2 else np.concatenate([points, np.zeros_like(points)], axis=1)


status = "" if fit["status"] == "ok" else f" [{fit['status']}: last finite parameters]"
run_name = f"{w.dataset}, {plots.solver_label(w.solver)}, seed {seed}{status}"
dim = int(test["x"].shape[1])
save_figure(
    plots.predictions_vs_observed(
        [two_columns(o) for o in observed[1:]], [two_columns(p) for p in predicted],
        target_labels=labels[1:].tolist(), w1=scores["w1_per_step"],
        title=f"{run_name}: one-step predictions from the observed test points (mean W1 {scores['w1_mean']:.3g})"
        + ("" if dim > 1 else "; d = 1, second axis 0"),
        max_points=settings["max_points"],
    ),
    snakemake.output.predictions,
)

# Learned potential on the first two coordinates, the others at the data mean; one panel per target time
# for a time-dependent potential.
low, high = plots.data_window(population["x"])
grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], settings["grid_points"], dtype=np.float32),
                             np.linspace(low[1], high[1], settings["grid_points"], dtype=np.float32))
points = np.tile(population["x"].mean(axis=0).astype(np.float32), (grid_x.size, 1))
points[:, 0] = grid_x.ravel()
if dim > 1:
    points[:, 1] = grid_y.ravel()
time_dependent = getattr(spec, "time_dependent", False)
times = labels[1:].tolist() if time_dependent else [None]
values, titles = [], []
for label in times:
    v = pipeline.learned_potential(params, spec, points, label)
    if v is not None:
        v = v.reshape(grid_x.shape)
        v = v - v[np.isfinite(v)].mean() if np.any(np.isfinite(v)) else v
    values.append(v)
    titles.append("learned V" if label is None else f"learned V(., t = {int(time_values[label])})")
clouds = [population["x"][population["t"] == label] for label in times] if time_dependent else [population["x"]]
others = "" if dim <= 2 else f"; x_3..x_{dim} at the data mean"
save_figure(
    plots.potential_panels(grid_x, grid_y, values, titles=titles, points=clouds, n_levels=settings["n_levels"],
                           title=f"{run_name}: level curves on the first two coordinates{others} (centred)",
                           max_points=settings["max_points"], message=f"{w.solver} learns no potential"),
    snakemake.output.levels,
)

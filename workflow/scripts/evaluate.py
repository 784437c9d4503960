"""Snakemake adapter: final one-step-ahead W1 of a trained run, its level curves and its predictions."""

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
log = log_to(snakemake.log[0], "evaluate")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jkonetstar import energies, pipeline, plots  # noqa: E402
from jkonetstar.io import atomic_path, load_json, load_npz, save_json  # noqa: E402

w = snakemake.wildcards
seed, tau, dt = int(w.seed), float(snakemake.params.tau), float(snakemake.params.dt)
plot_settings = snakemake.params.plots
params, spec = pipeline.load_model(snakemake.input.model)
predict_options = snakemake.params.predict_options
fit = load_json(snakemake.input.fit)
test = load_npz(snakemake.input.test, required=("x", "t"))

# One step from every observed test snapshot: scored here and drawn below.
steps = pipeline.one_step(params, spec, test["x"], test["t"], seed, tau=tau, predict_options=predict_options)
_, observed, predicted = steps
scores = pipeline.evaluate(params, spec, test["x"], test["t"], seed, tau=tau, predict_options=predict_options,
                           steps=steps)
labels = np.unique(test["t"])
log.info("one-step W1 per step %s (training status %s)", np.round(scores["w1_per_step"], 5).tolist(), fit["status"])
save_json(
    snakemake.output.metrics,
    {
        "potential": w.potential,
        "interaction": w.interaction,
        "beta": float(w.beta),
        "dim": int(w.dim),
        "n_particles": int(w.n),
        "pairing": w.pairing,
        "ot": w.ot,
        "solver": w.solver,
        "seed": seed,
        **fit,
        **scores,
        "target_labels": [int(v) for v in labels[1:]],
    },
)



def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


run_name = f"{w.potential} (interaction {w.interaction}, beta {w.beta}, d = {w.dim}), {plots.solver_label(w.solver)}"
status = "" if fit["status"] == "ok" else f" [{fit['status']}: last finite parameters]"

low, high = plot_settings["limits"]
axis = np.linspace(low, high, plot_settings["grid_points"], dtype=np.float32)
grid_x, grid_y = np.meshgrid(axis, axis)
points = np.zeros((grid_x.size, int(w.dim)), np.float32)
points[:, 0], points[:, 1 % int(w.dim)] = grid_x.ravel(), grid_y.ravel()
v_true = np.asarray(jax.vmap(energies.get_potential(w.potential))(jnp.asarray(points))).reshape(grid_x.shape)
v_learned, message = None, None
if getattr(spec, "potential", True) and not getattr(spec, "time_dependent", False):
    v_learned = pipeline.learned_potential(params, spec, points).reshape(grid_x.shape)
    v_learned = (v_learned - v_learned.mean()) * (tau / dt)
    if not np.all(np.isfinite(v_learned)):
        message = "learnt potential is not finite"
else:
    message = f"{w.solver} learns no time-independent potential"
slice_note = "" if int(w.dim) == 2 else f" (slice x_3..x_{w.dim} = 0)"
save_figure(
    plots.level_curves(
        grid_x,
        grid_y,
        v_true - v_true.mean(),
        v_learned,
        n_levels=plot_settings["n_levels"],
        title=f"{run_name}{status}\nlevel curves{slice_note}: V is learnt up to a constant and scaled by dt/tau, "
        "so both are centred on their grid mean",
        true_title="true V",
        learned_title=rf"learned $(\tau/dt)\,V_\theta$, $\tau/dt$ = {tau / dt:g}",
        message=message,
    ),
    snakemake.output.levels,
)
save_figure(
    plots.predictions_vs_observed(
        observed[1:],
        predicted,
        target_labels=labels[1:].tolist(),
        w1=scores["w1_per_step"],
        title=f"{run_name}{status}: one-step predictions from the observed test particles "
        f"(mean W1 {scores['w1_mean']:.3g})",
        max_points=plot_settings["max_points"],
    ),
    snakemake.output.predictions,
)

"""Snakemake adapter: final one-step-ahead W1 of a trained run (every prediction step), recovery of the true
energies, then its level curves and its predictions (pictures last: a picture never loses a metric)."""

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
import numpy as np  # noqa: E402

from jkonetstar import energies, pipeline, plots  # noqa: E402
from jkonetstar.io import load_json, load_npz, save_json  # noqa: E402

w = snakemake.wildcards
seed, tau, dt, dim = int(w.seed), float(snakemake.params.tau), float(snakemake.params.dt), int(w.dim)
plot_settings = snakemake.params.plots
params, spec = pipeline.load_model(snakemake.input.model)
fit = load_json(snakemake.input.fit)
test = load_npz(snakemake.input.test, required=("x", "t"))

scores, steps = pipeline.evaluate_steps(params, spec, test["x"], test["t"], seed, tau=tau,
                                        predict_options=snakemake.params.predict_options, status=fit["status"])
recovery = pipeline.recovery(params, spec, pipeline.recovery_points(test["x"]), potential=w.potential,
                             interaction=w.interaction, beta=float(w.beta), tau=tau, dt=dt, status=fit["status"])
labels = np.unique(test["t"])
for step, step_scores in scores["by_predict_step"].items():
    log.info("%s step: one-step W1 per step %s (training status %s)", step,
             np.round(step_scores["w1_per_step"], 5).tolist(), fit["status"])
if scores.get("implicit_converged") is False:
    log.warning("implicit step did not converge: residuals %s > tolerance %g", scores["implicit_residual_per_step"],
                scores["implicit_tolerance"])
run = {"potential": w.potential, "interaction": w.interaction, "beta": float(w.beta), "dim": dim,
       "n_particles": int(w.n), "pairing": w.pairing, "ot": w.ot, "solver": w.solver, "seed": seed}
save_json(snakemake.output.metrics, {**run, **fit, **scores, "recovery": recovery,
                                     "target_labels": [int(v) for v in labels[1:]]})

# Pictures, after the metrics are on disk.
_, observed, predicted, _ = steps
run_name = f"{w.potential} (interaction {w.interaction}, beta {w.beta}, d = {dim}), {plots.solver_label(w.solver)}"
status = "" if fit["status"] == "ok" else f" [{fit['status']}: last finite parameters]"
low, high = plot_settings["limits"]
axis = np.linspace(low, high, plot_settings["grid_points"], dtype=np.float32)
shape = (len(axis),) if dim == 1 else (len(axis), len(axis))
grid = np.meshgrid(axis, axis) if dim > 1 else [axis]
points = np.zeros((axis.size ** min(dim, 2), dim), np.float32)
points[:, 0] = grid[0].ravel()
if dim > 1:
    points[:, 1] = grid[1].ravel()
v_true = np.asarray(jax.vmap(energies.get_potential(w.potential))(jnp.asarray(points))).reshape(shape)
v_learned, message = None, f"{w.solver} learns no time-independent potential"
if getattr(spec, "potential", True) and not getattr(spec, "time_dependent", False):
    v_learned = pipeline.learned_potential(params, spec, points).reshape(shape)
    v_learned = (v_learned - v_learned.mean()) * (tau / dt)
    message = "learnt potential is not finite"
learned_title = rf"learned $(\tau/dt)\,V_\theta$, $\tau/dt$ = {tau / dt:g}"
def title(what):
    return f"{run_name}{status}\n{what}: V is learnt up to a constant and scaled by dt/tau, so both are centred on their mean"


if dim == 1:
    draw_levels = lambda: plots.potential_profile(  # noqa: E731
        axis, v_true - v_true.mean(), v_learned, title=title("potential"), learned_label=learned_title,
        true_label="true V", message=message)
else:
    draw_levels = lambda: plots.level_curves(  # noqa: E731
        *grid, v_true - v_true.mean(), v_learned, n_levels=plot_settings["n_levels"],
        title=title("level curves" + ("" if dim == 2 else f" (slice x_3..x_{dim} = 0)")),
        true_title="true V", learned_title=learned_title, message=message)
plots.save_figure(draw_levels, snakemake.output.levels, log=log)
plots.save_figure(lambda: plots.predictions_vs_observed(
    observed[1:], predicted, target_labels=labels[1:].tolist(), w1=scores["w1_per_step"],
    title=f"{run_name}{status}: one-step predictions ({scores['predict_step']} step) from the observed test "
          f"particles (mean W1 {scores['w1_mean']:.3g})", max_points=plot_settings["max_points"],
), snakemake.output.predictions, log=log)

"""Snakemake adapter: how well each run of an experiment recovered the energy terms it learns.

Per run, as tidy metric rows: the learnt beta rescaled to the data's units (the learnt beta approximates
dt * beta / tau, so ``beta_recovered = beta_hat * tau / dt``) and its error; and, on a square grid of the
first two coordinates (the others 0), the Pearson correlation and the relative L2 error between the
learnt and the true gradients of the potential V(x) and of the interaction W(z) (z = x - y).
"""

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
log = log_to(snakemake.log[0], "recovery")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import energies, models  # noqa: E402
from jkonetstar.io import atomic_path  # noqa: E402

RUN_COLUMNS = ["potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot", "solver", "seed"]


def grid_points(dim, limits, n_points):
    """``[n_points^2, dim]`` grid of the first two coordinates over ``limits``^2, the others 0."""
    axis = np.linspace(*limits, n_points, dtype=np.float32)
    grid_x, grid_y = np.meshgrid(axis, axis)
    points = np.zeros((grid_x.size, dim), np.float32)
    points[:, 0], points[:, 1 % dim] = grid_x.ravel(), grid_y.ravel()
    return points


def true_gradients(energy, points):
    if energy is None:
        return np.zeros_like(points)
    return np.asarray(jax.vmap(jax.grad(energy))(jnp.asarray(points)))


def compare(learned, true, scale):
    """Pearson correlation of all gradient components and relative L2 error of ``scale * learned``.

    Both are NaN where undefined: a constant true field (e.g. the flat potential, or no interaction) has no
    correlation, a zero one no relative error; non-finite learnt gradients give NaN too.
    """
    learned, true = np.ravel(learned).astype(np.float64), np.ravel(true).astype(np.float64)
    if not np.all(np.isfinite(learned)):
        return float("nan"), float("nan")
    correlation = float("nan")
    if np.std(true) > 1e-12 and np.std(learned) > 1e-12:
        correlation = float(np.corrcoef(learned, true)[0, 1])
    norm = np.linalg.norm(true)
    relative = float(np.linalg.norm(scale * learned - true) / norm) if norm > 1e-12 else float("nan")
    return correlation, relative


taus, dt = snakemake.params.taus, float(snakemake.params.dt)
limits, n_points = snakemake.params.grid["limits"], int(snakemake.params.grid["grid_points"])
rows = []
for run, model_path in zip(snakemake.params.runs, snakemake.input.models):
    params, spec = models.load_params(model_path)
    tau = float(taus[run["solver"]])
    key = {
        "potential": run["potential"], "interaction": run["interaction"], "beta": float(run["beta"]),
        "dim": int(run["dim"]), "n_particles": int(run["n"]), "pairing": run["pairing"], "ot": run["ot"],
        "solver": run["solver"], "seed": int(run["seed"]),
    }
    values = {}
    if spec.internal:
        beta_hat = float(params["beta"])
        values.update(beta_hat=beta_hat, beta_recovered=beta_hat * tau / dt,
                      beta_error=beta_hat * tau / dt - float(run["beta"]))
    points = grid_points(int(run["dim"]), limits, n_points)
    for term, energy in (("potential", energies.get_potential(run["potential"])),
                         ("interaction", energies.get_interaction(run["interaction"]))):
        if not getattr(spec, term) or spec.time_dependent:
            continue
        learned = np.asarray(models.energy_gradients(params, spec, term, points))
        values[f"{term}_grad_corr"], values[f"{term}_grad_rel_error"] = compare(
            learned, true_gradients(energy, points), tau / dt)
    log.info("%s: %s", model_path, {k: round(v, 4) for k, v in values.items()})
    rows += [{**key, "metric": name, "value": value} for name, value in values.items()]

table = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "metric", "value"])
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False)

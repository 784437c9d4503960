"""Snakemake adapter: the single-cell RNA figure (paper Fig. 5) from the first seed's run of the first solver."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

log = log_to(snakemake.log[0], "rna_figure")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import figures, models, pipeline, plots  # noqa: E402
from jkonetstar.io import atomic_path, load_npz  # noqa: E402

settings, seed, solver = snakemake.params.plots, int(snakemake.params.seed), snakemake.params.solver
tau = float(snakemake.params.tau)
population = load_npz(snakemake.input.population, required=("x", "t", "time_values"))
test = load_npz(snakemake.input.test, required=("x", "t"))
params, spec = models.load_params(snakemake.input.model)
table = pd.read_csv(snakemake.input.table)

labels = np.unique(population["t"])
names = snakemake.params.time_names or [f"t = {int(v)}" for v in population["time_values"]]
observed = [population["x"][population["t"] == label] for label in labels]

# Interpolated predictions: the midpoint between each observed test cell at t_k and its one-step prediction
# at t_{k+1} (straight-line interpolation of the one-step predictor, drawn between the two days).
predict = pipeline.make_predictor(params, spec, tau=tau, **(snakemake.params.predict_options or {}))
key_eval = jax.random.fold_in(jax.random.key(seed), 1)
interpolated = []
for source, target in zip(labels[:-1], labels[1:]):
    x = test["x"][test["t"] == source]
    interpolated.append(0.5 * (x + predict(jax.random.fold_in(key_eval, int(source)), x, int(target))))

low, high = plots.data_window(population["x"])
grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], settings["grid_points"], dtype=np.float32),
                             np.linspace(low[1], high[1], settings["grid_points"], dtype=np.float32))
points = np.zeros((grid_x.size, population["x"].shape[1]), np.float32)
points[:, 0], points[:, 1] = grid_x.ravel(), grid_y.ravel()
potentials = {}
if spec.potential:
    for label in (labels[1:] if spec.time_dependent else labels[:1]):
        v = np.asarray(models.potential_values(params, spec, points, int(label))).reshape(grid_x.shape)
        potentials[int(label)] = v - v.mean()

ours = table[(table.solver == solver) & (table.statistic == "over seed means")].iloc[0]
first = table[(table.solver == solver) & (table.statistic == f"over time steps, seed {seed}")].iloc[0]
caption = (
    f"{plots.solver_label(solver)} on the embryoid-body data (first 5 standardised PCs; PC1-PC2 shown, other PCs 0 "
    f"in the level curves; V trained at the target times 1..{labels[-1]}). One-step EMD on the 40% test split: "
    f"seed {seed} {first.emd_mean:.3f} $\\pm$ {first.emd_std:.3f} over time steps; "
    f"{ours.emd_mean:.3f} $\\pm$ {ours.emd_std:.3f} over {int(ours.n)} seed means (paper: 0.623 $\\pm$ 0.04). "
    f"Blue: midpoint between each test cell and its predicted position one snapshot later ({predict.step} step). "
    f"Settings: {snakemake.params.protocol}."
)
fig = figures.rna_figure(observed, interpolated, grid_x, grid_y, potentials, time_names=names,
                       max_points=settings["max_points"], n_levels=settings["n_levels"],
                       title="Single-cell RNA (embryoid body): paper Fig. 5", caption=caption)
for path, kind in ((snakemake.output.png, "png"), (snakemake.output.pdf, "pdf")):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
plt.close(fig)
log.info("wrote %s", list(snakemake.output))

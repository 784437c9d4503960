"""Snakemake adapter: the coupling ablation (exact vs Sinkhorn couplings) figure and its seed summary."""

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

_log_file = open(snakemake.log[0], "w", buffering=1)
os.dup2(_log_file.fileno(), 1)
os.dup2(_log_file.fileno(), 2)
sys.stdout = sys.stderr = _log_file
logging.basicConfig(stream=_log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("figure_ablation")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import plots  # noqa: E402
from jkonetstar.io import atomic_path  # noqa: E402


def listing(values):
    return ", ".join(str(v) for v in values)


def training(solvers):
    """One phrase per solver: its epochs and minibatch, or its closed-form solve."""
    parts = []
    for name, hp in solvers.items():
        if "linear" in name:
            parts.append(f"{plots.solver_label(name)}: closed form, ridge {hp['ridge']:g}")
        else:
            parts.append(f"{plots.solver_label(name)}: {hp['epochs']} epochs, batch {hp['batch_size']}, "
                         f"lr {hp['learning_rate']:g}")
    return "; ".join(parts)


def save(fig, summary):
    with atomic_path(snakemake.output.summary) as tmp:
        summary.to_csv(tmp, index=False)
    for path, kind in ((snakemake.output.png, "png"), (snakemake.output.pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", list(snakemake.output))


grid, data, solvers = snakemake.params.grid, snakemake.params.data, snakemake.params.solvers
table = pd.read_csv(snakemake.input.table)
summary = plots.seed_summary(table)
setting = (f"T = {data['n_steps']} steps of dt = {data['dt']:g}, {data['test_ratio']:g} of the particles "
           f"held out by {data['split_by']}; seeds {listing(grid['seeds'])}; {training(solvers)}.")

couplings = snakemake.params.couplings
caption = (f"{len(grid['potentials'])} potentials, d = {listing(grid['dims'])}, N = {listing(grid['n_particles'])} "
           f"per snapshot; blocks of {couplings['block_size']} particles, Sinkhorn threshold "
           f"{couplings['sinkhorn_threshold']:g}, at most {couplings['sinkhorn_max_iterations']} iterations, plans "
           f"sparsified at 1/(10 n). {setting}")
fig = plots.ablation_figure(table, caption=caption)
save(fig, summary)

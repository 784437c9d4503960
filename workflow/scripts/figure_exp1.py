"""Snakemake adapter: the paper's Figure 3 (Exp. 4.1) from the exp1 tables."""

import logging
import os
import sys
import textwrap
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
log = logging.getLogger("figure_exp1")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import plots  # noqa: E402
from jkonetstar.io import atomic_path  # noqa: E402


def listing(values):
    return ", ".join(str(v) for v in values)


grid, data, solvers = snakemake.params.grid, snakemake.params.data, snakemake.params.solvers
order = list(dict.fromkeys(grid["solvers"] + [s for subset in grid.get("subsets", []) for s in subset["solvers"]]))
subset_note = "".join(
    f"; {', '.join(plots.solver_label(s) for s in subset['solvers'])} on {listing(subset['potentials'])} only"
    for subset in grid.get("subsets", [])
)
training = "; ".join(
    f"{plots.solver_label(name)}: {hp['epochs']} epochs, batch {hp['batch_size']}, lr {hp['learning_rate']:g}, "
    f"W1 every {hp['eval_every']}"
    for name, hp in ((name, solvers[name]) for name in order)
    if "linear" not in name
)
caption = "\n".join(
    textwrap.wrap(
        f"N = {listing(grid['n_particles'])} particles per snapshot, {data['test_ratio']:g} held out by "
        f"{data['split_by']}; d = {listing(grid['dims'])}; T = {data['n_steps']} steps of dt = {data['dt']:g}; "
        f"interaction {listing(grid['interactions'])}, beta {listing(grid['betas'])}; "
        f"seeds {listing(grid['seeds'])}{subset_note}. {training}; linear solvers: one closed-form solve. "
        "EMD = one-step-ahead W1 on the test split, mean over the time steps; markers: mean over seeds, "
        "bars: min-max over seeds.",
        width=170,
    )
)

table = pd.read_csv(snakemake.input.table)
history = pd.read_csv(snakemake.input.history)
fig = plots.figure3(
    table,
    history,
    potential_order=grid["potentials"],
    solver_order=order,
    caption=caption,
)
for path, kind in ((snakemake.output.png, "png"), (snakemake.output.pdf, "pdf")):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
plt.close(fig)
log.info("wrote %s", snakemake.output)

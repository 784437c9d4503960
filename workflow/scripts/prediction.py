"""Snakemake adapter: Exp. 4.1's JKOnet* MLP runs predicted with the explicit and the implicit step (table, figure)."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

log = log_to(snakemake.log[0], "figure prediction")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import figures  # noqa: E402
from jkonetstar.io import atomic_path  # noqa: E402

grid = snakemake.params.grid
table = figures.prediction_table(pd.read_csv(snakemake.input.table))
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False)
caption = (f"Exp. 4.1 runs (N = {', '.join(map(str, grid.get('n_particles', [])))} per snapshot, seeds "
           f"{', '.join(map(str, grid.get('seeds', [])))}); explicit: x - tau grad V(x) (published evaluation); implicit: "
           f"fixed point y = x - tau grad V(y) (the step the loss was trained on). Settings: {snakemake.params.protocol}.")
fig = figures.prediction_figure(table, potential_order=grid.get("potentials"), solver_order=grid.get("solvers"),
                                caption=caption)
for path, kind in ((snakemake.output.png, "png"), (snakemake.output.pdf, "pdf")):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
plt.close(fig)
log.info("%d rows; wrote %s", len(table), list(snakemake.output))

"""Snakemake adapter: read a real population time course (npz, CSV, data.npy directory or TrajectoryNet's
eb_velocity_v5.npz, whose PCs are standardised and cut to the first n_pcs; with particle ids and a given
train/test split where the data have them) into population.npz."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

log = log_to(snakemake.log[0], "dataset_population")

import numpy as np  # noqa: E402

from jkonetstar.data import load_population  # noqa: E402
from jkonetstar.io import save_json, save_npz  # noqa: E402

source = snakemake.params.source
population = load_population(source["location"], time_column=source["time_column"], n_pcs=source["n_pcs"],
                             particle_column=source["particle_column"], test_path=source["test_location"])
counts = np.bincount(population["t"])
log.info("%s: %d points in d = %d, %d snapshots of sizes %s; particle ids: %s; pre-split: %s", source["location"],
         len(population["x"]), population["x"].shape[1], len(counts), counts.tolist(), "particle" in population,
         "test" in population)
save_npz(snakemake.output.population, **population)
save_json(snakemake.output.summary, {
    "dataset": snakemake.wildcards.dataset,
    "source": source["location"],
    "n_points": int(len(population["x"])),
    "dim": int(population["x"].shape[1]),
    "time_values": [int(v) for v in population["time_values"]],
    "points_per_snapshot": [int(c) for c in counts],
    "particle_ids": "particle" in population,
    "test_points": int(population["test"].sum()) if "test" in population else None,
})

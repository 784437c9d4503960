"""Snakemake adapter: simulate one synthetic population time course (paper Sec. 4, App. F energies)."""

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
log = log_to(snakemake.log[0], "simulate")

import numpy as np  # noqa: E402

import jkonetstar  # noqa: E402
from jkonetstar import pipeline  # noqa: E402
from jkonetstar.io import save_json, save_npz  # noqa: E402

w = snakemake.wildcards
settings = dict(
    potential=w.potential,
    interaction=w.interaction,
    beta=float(w.beta),
    n_particles=int(w.n),
    dim=int(w.dim),
    **snakemake.params.simulation,
)
log.info("simulating %s, seed %s", settings, w.seed)
population = pipeline.simulate_population(int(w.seed), **settings)
if not np.all(np.isfinite(population["x"])):
    raise ValueError(f"simulation {settings} produced non-finite positions; lower data.dt")
save_npz(snakemake.output.population, **population)
save_json(snakemake.output.settings, {**settings, "seed": int(w.seed), "jkonetstar_version": jkonetstar.__version__})
log.info("wrote %d rows, %d snapshots", len(population["x"]), len(np.unique(population["t"])))

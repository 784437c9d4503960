"""Snakemake adapter: simulate one synthetic population time course (paper Sec. 4, App. F energies)."""

import logging
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
# Jobs of one stage compile the same XLA programs (same shapes for every potential): reuse them
# across jobs through JAX's persistent cache, kept per host since compiled code is CPU-specific.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(".snakemake", "jax-cache", platform.node()).resolve()))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

_log_file = open(snakemake.log[0], "w", buffering=1)
os.dup2(_log_file.fileno(), 1)
os.dup2(_log_file.fileno(), 2)
sys.stdout = sys.stderr = _log_file
logging.basicConfig(stream=_log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("simulate")

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

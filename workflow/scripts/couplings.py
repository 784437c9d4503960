"""Snakemake adapter: train/test split, OT couplings of the training snapshots and GMM densities at the targets."""

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
log = logging.getLogger("couplings")

from jkonetstar import density, pipeline  # noqa: E402
from jkonetstar.io import load_npz, save_json, save_npz  # noqa: E402

w = snakemake.wildcards
split, couplings, mixtures = snakemake.params.split, snakemake.params.couplings, snakemake.params.density
population = load_npz(snakemake.input.population, required=("x", "t"))
prepared = pipeline.prepare_training_data(population, int(w.seed), pairing=w.pairing, **split, **couplings,
                                          **mixtures)
log.info("%s", prepared.summary)

# The arrays of jkonetstar.training.TrainingData, by field name (TrainingData.load reads them).
save_npz(snakemake.output.train, **prepared.train._asdict())
save_npz(snakemake.output.test, x=prepared.x_test, t=prepared.t_test)
save_npz(snakemake.output.train_population, x=prepared.x_train, t=prepared.t_train)
save_npz(snakemake.output.density, **density.mixtures_to_arrays(prepared.mixtures))
save_json(snakemake.output.summary, {"pairing": w.pairing, **split, **couplings, **mixtures, **prepared.summary})

"""Snakemake adapter: split a real population (unless it comes split), couple the consecutive training
snapshots as the dataset's pairing says and fit the Gaussian-mixture densities."""

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
log = log_to(snakemake.log[0], "dataset_couplings")

from jkonetstar import density, pipeline  # noqa: E402
from jkonetstar.io import load_npz, save_json, save_npz  # noqa: E402

seed = int(snakemake.params.split_seed)  # rna: one split (seed 0) for every training seed, as the published runs
split, couplings, mixtures = snakemake.params.split, snakemake.params.couplings, snakemake.params.density
train, test = pipeline.given_split(load_npz(snakemake.input.population, required=("x", "t")))
# The dataset's pairing (null: paired when the data have particle ids, else independent). Paired data are
# split by particle; independent snapshots within every snapshot; pre-split data as given.
prepared = pipeline.prepare_training_data(train, seed, test_population=test, split_by="trajectory",
                                          pairing=snakemake.params.pairing, **split, **couplings, **mixtures)
log.info("%s", prepared.summary)
save_npz(snakemake.output.train, **prepared.train._asdict())
save_npz(snakemake.output.test, x=prepared.x_test, t=prepared.t_test)
save_npz(snakemake.output.train_population, x=prepared.x_train, t=prepared.t_train)  # for the JKOnet baselines
save_npz(snakemake.output.density, **density.mixtures_to_arrays(prepared.mixtures))
save_json(snakemake.output.summary, {**split, **couplings, **mixtures, **prepared.summary})

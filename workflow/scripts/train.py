"""Snakemake adapter of jkonetstar.jobs.train (rule train: synthetic and real data)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "train", solver=p.solver, seed=p.seed, hp=p.hp, couplings=i.couplings, test=i.test,
                    train_population=i.train_population, model=o.model, history=o.history, fit=o.fit)

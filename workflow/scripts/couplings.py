"""Snakemake adapter of jkonetstar.jobs.couple (rule couplings: synthetic and real data)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "couple", population=i.population, seed=p.seed,
                    split=p.split, couplings=p.couplings, density=p.density, pairing=p.pairing,
                    given_split=p.given_split, train=o.train, test=o.test, train_population=o.train_population,
                    mixtures=o.density, summary=o.summary)

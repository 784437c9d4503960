"""Snakemake adapter of jkonetstar.jobs.energy (rule energy: a real-data run's learnt energy per cell)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "energy", run=p.run, tau=p.tau, model=i.model, fit=i.fit, population=i.population,
                    test=i.test, h5ad=o.h5ad, csv=o.csv, png=o.png)

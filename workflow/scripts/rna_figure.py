"""Snakemake adapter of jkonetstar.jobs.rna_figure (rule rna_figure: paper Fig. 5)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "rna_figure", population=i.population, test=i.test, model=i.model, table=i.table,
                    seed=p.seed, solver=p.solver, tau=p.tau, plots=p.plots, time_names=p.time_names,
                    predict_options=p.predict_options, protocol=p.protocol, png=o.png, pdf=o.pdf)

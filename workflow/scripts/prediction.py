"""Snakemake adapter of jkonetstar.jobs.prediction_figure (rule prediction_figure)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "prediction_figure", table=i.table, grid=p.grid, protocol=p.protocol,
                    prediction_table=o.table, png=o.png, pdf=o.pdf)

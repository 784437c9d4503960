"""Snakemake adapter of jkonetstar.jobs.read_dataset (rule read_dataset)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "read_dataset", dataset=p.dataset, source=p.source, population=o.population,
                    summary=o.summary)

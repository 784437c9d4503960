"""Snakemake adapter of jkonetstar.jobs.rna_table (rule rna_table: paper Sec. 4.4)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "rna_table", metrics=i.metrics, protocol=p.protocol, table=o.table)

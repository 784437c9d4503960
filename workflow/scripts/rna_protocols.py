"""Snakemake adapter of jkonetstar.jobs.rna_protocols (rule rna_protocols: EB under both protocols)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "rna_protocols", one_step=i.one_step, leave_one_out=i.leave_one_out,
                    protocol=p.protocol, table=o.table, png=o.png, pdf=o.pdf)

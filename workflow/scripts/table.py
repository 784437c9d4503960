"""Snakemake adapter of jkonetstar.jobs.table (rule table: experiments and real datasets)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "table", metrics=i.metrics, run_columns=p.run_columns, couplings=i.get("couplings", []),
                    histories=i.get("histories", []), table=o.table, history=o.get("history"))

"""Snakemake adapter of jkonetstar.jobs.figure (rule figure: exp1 = paper Figure 3, exp2, exp3, ablation, pairing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "figure", experiment=p.experiment, table=i.table, history=i.history, grid=p.grid,
                    solvers=p.solvers, data=p.data, extra=p.extra, protocol=p.protocol, png=o.png, pdf=o.pdf,
                    summary=o.summary)

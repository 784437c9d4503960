"""Snakemake adapter of jkonetstar.jobs.evaluate (rule evaluate: synthetic and real runs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "evaluate", run=p.run, truth=p.truth, tau=p.tau, predict_options=p.predict_options,
                    plots=p.plots, model=i.model, fit=i.fit, test=i.test, population=i.population,
                    couplings=i.couplings, metrics=o.metrics, levels=o.levels, predictions=o.predictions)

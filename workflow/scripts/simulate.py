"""Snakemake adapter of jkonetstar.jobs.simulate (rules simulate, simulate_independent)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))  # the checkout first: conda envs lack it
from jkonetstar import jobs  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params
jobs.from_snakemake(snakemake, "simulate", seed=p.seed, run=p.run, simulation=p.simulation,
                    population=o.population, settings=o.settings)

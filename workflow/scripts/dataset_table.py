"""Snakemake adapter: one tidy table of every run's metrics on one real dataset."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

log = log_to(snakemake.log[0], "dataset_table")

import pandas as pd  # noqa: E402

from jkonetstar.io import atomic_path, load_json  # noqa: E402

SCALARS = ["w1_mean", "w1_std", "seconds_per_epoch", "compile_seconds", "epochs_run", "train_seconds",
           "eval_seconds", "final_loss", "last_evaluated_w1", "n_couplings"]
rows = []
for path in snakemake.input.metrics:
    metrics = load_json(path)
    run = {key: metrics[key] for key in ("dataset", "solver", "seed", "dim")}
    values = {name: metrics[name] for name in SCALARS}
    values["diverged"] = float(metrics["status"] == "diverged")
    values.update({f"w1_step_{label}": v for label, v in zip(metrics["target_labels"], metrics["w1_per_step"])})
    rows += [{**run, "metric": name, "value": float(value)} for name, value in values.items()]
table = pd.DataFrame(rows, columns=["dataset", "solver", "seed", "dim", "metric", "value"])
summary = table[table.metric == "w1_mean"].groupby("solver")["value"].agg(["mean", "std", "count"])
log.info("mean one-step W1 per solver (over seeds):\n%s", summary)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False)

"""Snakemake adapter: one tidy table of every run's metrics and one of every run's training history."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

log = log_to(snakemake.log[0], "table")

import pandas as pd  # noqa: E402

from jkonetstar.io import atomic_path, load_json  # noqa: E402

RUN_COLUMNS = ["potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot", "solver", "seed"]
# Each row also says which prediction step its metric was computed with (the run's configured step for the
# metrics that do not depend on it) and the run's training status (a diverged run's scores are NaN).
COLUMNS = [*RUN_COLUMNS, "predict_step", "status", "metric", "value"]
SCALARS = [
    "w1_mean",
    "w1_std",
    "seconds_per_epoch",
    "compile_seconds",
    "epochs_run",
    "train_seconds",
    "eval_seconds",
    "final_loss",
    "last_evaluated_w1",
]
STEP_SCALARS = ["w1_mean", "w1_std"]  # metrics of every prediction step (the others: the configured step only)


def step_values(scores, labels):
    values = {name: scores[name] for name in STEP_SCALARS}
    values.update({f"w1_step_{label}": v for label, v in zip(labels, scores["w1_per_step"])})
    if "implicit_residual_per_step" in scores:
        values["implicit_max_residual"] = max(scores["implicit_residual_per_step"])
        values["implicit_converged"] = float(scores["implicit_converged"])
    return values


rows, histories = [], []
for metrics_path, history_path, couplings_path in zip(snakemake.input.metrics, snakemake.input.histories,
                                                      snakemake.input.couplings):
    metrics = load_json(metrics_path)
    couplings = load_json(couplings_path)
    run = {column: metrics[column] for column in RUN_COLUMNS}
    chosen, status = metrics["predict_step"], metrics["status"]
    values = {name: metrics[name] for name in SCALARS}
    if status == "diverged":  # never scored as if trained (the evaluation made its scores NaN already)
        values["last_evaluated_w1"] = float("nan")
    values["diverged"] = float(status == "diverged")
    # Wall-clock of the OT plans of all snapshot pairs (Sinkhorn: includes its jit compilation) and coupled pairs.
    seconds = couplings["seconds_per_snapshot_pair"]
    values["coupling_seconds"] = sum(seconds)
    # The same without the first snapshot pair, which includes Sinkhorn's jit compilation: the other pairs'
    # mean times the number of pairs.
    values["coupling_seconds_warm"] = sum(seconds[1:]) / (len(seconds) - 1) * len(seconds) if len(seconds) > 1 \
        else sum(seconds)
    values["n_couplings"] = sum(couplings["pairs_per_target_snapshot"].values())
    if couplings.get("two_sample_w1_per_snapshot"):  # independent snapshots: the floor of their one-step EMD
        values["two_sample_w1"] = sum(couplings["two_sample_w1_per_snapshot"].values()) / len(
            couplings["two_sample_w1_per_snapshot"])
    values.update(step_values(metrics, metrics["target_labels"]))
    values.update(metrics.get("recovery", {}))  # learnt vs true energies (jkonetstar.pipeline.recovery)
    rows += [{**run, "predict_step": chosen, "status": status, "metric": name, "value": float(value)}
             for name, value in values.items()]
    for step, scores in metrics["by_predict_step"].items():
        if step != chosen:
            rows += [{**run, "predict_step": step, "status": status, "metric": name,
                      "value": float("nan") if status == "diverged" else float(value)}
                     for name, value in step_values(scores, metrics["target_labels"]).items()]
    history = pd.read_csv(history_path)
    histories.append(history.assign(**run)[RUN_COLUMNS + [c for c in history.columns if c not in RUN_COLUMNS]])

table = pd.DataFrame(rows, columns=COLUMNS)
log.info("%d runs, %d rows; diverged runs: %d", len(snakemake.input.metrics), len(table),
         int(table.loc[table["metric"] == "diverged", "value"].sum()))
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.history) as tmp:
    pd.concat(histories, ignore_index=True).to_csv(tmp, index=False)

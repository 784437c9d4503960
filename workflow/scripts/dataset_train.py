"""Snakemake adapter: fit one JKOnet* solver on a real dataset's couplings (one-step W1 on its test split)."""

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

_log_file = open(snakemake.log[0], "w", buffering=1)
os.dup2(_log_file.fileno(), 1)
os.dup2(_log_file.fileno(), 2)
sys.stdout = sys.stderr = _log_file
logging.basicConfig(stream=_log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("dataset_train")

import pandas as pd  # noqa: E402

from jkonetstar import models, pipeline, training  # noqa: E402
from jkonetstar.io import atomic_path, load_npz, save_json  # noqa: E402

w = snakemake.wildcards
settings = dict(snakemake.params.hp)  # keyword arguments of jkonetstar.training.fit
settings["hidden"] = tuple(settings["hidden"])
settings["feature_options"] = settings.pop("features")
spec = models.get_solver(w.solver)
data = training.TrainingData.load(snakemake.input.couplings)
test = load_npz(snakemake.input.test, required=("x", "t"))

log.info("training %s on %s (seed %s): %d coupled pairs, %s", spec.name, w.dataset, w.seed, len(data.source), settings)
result = pipeline.train(spec, data, test["x"], test["t"], int(w.seed), progress=log.info, **settings)
history = pd.DataFrame(result.history)
log.info("status %s after %d epochs (compilation %.2f s)", result.status, len(history), result.compile_seconds)

models.save_params(snakemake.output.model, result.params, spec)
with atomic_path(snakemake.output.history) as tmp:
    history.to_csv(tmp, index=False)
evaluated = history["w1"].dropna()
save_json(snakemake.output.fit, {
    "status": result.status,
    "epochs_run": int(history["epoch"].max()),
    "compile_seconds": float(result.compile_seconds),
    "seconds_per_epoch": float(history["seconds"].mean()),
    "train_seconds": float(history["seconds"].sum()),
    "eval_seconds": float(history["eval_seconds"].sum()),
    "final_loss": float(history["loss"].iloc[-1]),
    "last_evaluated_w1": float(evaluated.iloc[-1]) if len(evaluated) else float("nan"),
    "n_couplings": int(len(data.source)),
})

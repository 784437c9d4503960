"""Snakemake adapter: fit one JKOnet* solver on the couplings, evaluating one-step-ahead W1 on the test split."""

import logging
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
# Jobs of one stage compile the same XLA programs (same shapes for every potential): reuse them
# across jobs through JAX's persistent cache, kept per host since compiled code is CPU-specific.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(".snakemake", "jax-cache", platform.node()).resolve()))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

_log_file = open(snakemake.log[0], "w", buffering=1)
os.dup2(_log_file.fileno(), 1)
os.dup2(_log_file.fileno(), 2)
sys.stdout = sys.stderr = _log_file
logging.basicConfig(stream=_log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("train")

import pandas as pd  # noqa: E402

from jkonetstar import models, pipeline, training  # noqa: E402
from jkonetstar.io import atomic_path, load_npz, save_json  # noqa: E402

w = snakemake.wildcards
settings = dict(snakemake.params.hp)  # keyword arguments of jkonetstar.training.fit / baselines.fit_jkonet
settings["hidden"] = tuple(settings["hidden"])
spec = pipeline.get_method(w.solver)
test = load_npz(snakemake.input.test, required=("x", "t"))
if isinstance(spec, models.SolverSpec):
    settings["feature_options"] = settings.pop("features")
    data = training.TrainingData.load(snakemake.input.couplings)
    train_inputs, predict_options = {}, None
    log.info("training %s on %d coupled pairs with %s", spec.name, len(data.source), settings)
else:
    # The JKOnet baselines fit a transport map per step on the training trajectories, not on couplings.
    predict_options = {"step": settings.pop("predict_step"), "inner_steps": settings["inner_steps"],
                       "inner_learning_rate": settings["inner_learning_rate"]}
    train_population = load_npz(snakemake.input.train_population, required=("x", "t"))
    data, train_inputs = None, {"x_train": train_population["x"], "t_train": train_population["t"]}
    log.info("training baseline %s on %d training particles with %s", spec.name, len(train_population["x"]), settings)
result = pipeline.train(spec, data, test["x"], test["t"], int(w.seed), progress=log.info,
                        predict_options=predict_options, **train_inputs, **settings)
history = pd.DataFrame(result.history)
log.info("status %s after %d epochs (compilation %.2f s)", result.status, len(history), result.compile_seconds)

pipeline.save_model(snakemake.output.model, result.params, spec)
with atomic_path(snakemake.output.history) as tmp:
    history.to_csv(tmp, index=False)
evaluated = history["w1"].dropna()
save_json(
    snakemake.output.fit,
    {
        "status": result.status,
        "epochs_run": int(history["epoch"].max()),
        "compile_seconds": float(result.compile_seconds),
        "seconds_per_epoch": float(history["seconds"].mean()),
        "train_seconds": float(history["seconds"].sum()),
        "eval_seconds": float(history["eval_seconds"].sum()),
        "final_loss": float(history["loss"].iloc[-1]),
        "last_evaluated_w1": float(evaluated.iloc[-1]) if len(evaluated) else float("nan"),
        "n_couplings": int(len(data.source)) if data is not None else 0,
    },
)

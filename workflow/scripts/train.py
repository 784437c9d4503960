"""Snakemake adapter: fit one method on a coupled dataset (synthetic or real), one-step-ahead W1 on its test split."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to, share_compilation_cache  # noqa: E402

share_compilation_cache()  # before JAX compiles: jobs of a stage reuse compiled programs
log = log_to(snakemake.log[0], snakemake.rule)  # rules train and dataset_train

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

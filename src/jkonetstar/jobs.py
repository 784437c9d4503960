"""The workflow's jobs: one function per stage that reads its input files, runs the stage and writes its outputs.

Each function takes plain paths, settings and scalars as keyword arguments (no Snakemake object), so the
Snakemake adapters in ``workflow/scripts`` (through :func:`from_snakemake`) and a command line run the same
code. Heavy libraries (JAX, POT, scikit-learn, pandas, matplotlib) are imported inside the stage that needs
them: a job pays only for its own, JAX's persistent compilation cache is configured before JAX loads
(:func:`start`), and matplotlib loads only after a job's metrics are on disk.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from jkonetstar.io import atomic_path, load_json, load_npz, log_to, save_json, save_npz, share_compilation_cache

__all__ = [
    "start",
    "from_snakemake",
    "simulate",
    "read_dataset",
    "couple",
    "train",
    "evaluate",
    "table",
    "figure",
    "prediction_figure",
    "rna_table",
    "rna_figure",
    "rna_protocols",
    "protocol_rows",
    "PROTOCOLS",
    "energy",
    "RUN_COLUMNS",
    "DATASET_RUN_COLUMNS",
]

Path = str | os.PathLike

log = logging.getLogger("jkonetstar.jobs")

RUN_COLUMNS = ["potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot", "solver", "seed"]
"""Run descriptors of a synthetic run (the first columns of its tables)."""

DATASET_RUN_COLUMNS = ["dataset", "solver", "seed", "dim"]
"""Run descriptors of a run on a real dataset."""


def start(log_path: Path | None, name: str) -> logging.Logger:
    """Starts a job: JAX's persistent compilation cache (before JAX compiles), everything printed to ``log_path``."""
    share_compilation_cache()
    return log_to(log_path, name) if log_path is not None else logging.getLogger(name)


def from_snakemake(snakemake, stage: str, **arguments) -> None:
    """Runs job ``stage`` of a Snakemake ``script:`` with ``arguments`` (the adapter's mapping of the job's
    input, output and params): starts it (:func:`start`, the job's first log file), runs it and ends the
    process.

    A job that succeeded ends with ``os._exit(0)`` once the log and the standard streams are flushed: its
    outputs are closed on disk (written through :func:`jkonetstar.io.atomic_path`), and the interpreter's
    teardown of JAX and matplotlib would add about 0.5 s to every job. A job that fails raises as usual.
    """
    start(snakemake.log[0] if snakemake.log else None, f"{snakemake.rule}: {stage}")
    globals()[stage](**arguments)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _status_note(status: str) -> str:
    return "" if status == "ok" else f" [{status}: last finite parameters]"


# ---- data ----


def simulate(*, seed: int, run: Mapping, simulation: Mapping, population: Path, settings: Path) -> None:
    """Simulates one synthetic population time course (paper Sec. 4, App. F energies).

    Args:
        seed: the simulation's seed.
        run: ``potential``, ``interaction``, ``beta``, ``n_particles``, ``dim``.
        simulation: the data settings (``dt``, ``n_steps``, optional ``independent``).
        population, settings: output paths (``x``, ``t``, ``particle`` arrays; the settings as JSON).
    """
    import jkonetstar
    from jkonetstar import pipeline

    options = {**run, **simulation}
    log.info("simulating %s, seed %s", options, seed)
    data = pipeline.simulate_population(int(seed), **options)
    if not np.all(np.isfinite(data["x"])):
        raise ValueError(f"simulation {options} produced non-finite positions; lower data.dt")
    save_npz(population, **data)
    save_json(settings, {**options, "seed": int(seed), "jkonetstar_version": jkonetstar.__version__})
    log.info("wrote %d rows, %d snapshots", len(data["x"]), len(np.unique(data["t"])))


def read_dataset(*, dataset: str, source: Mapping, population: Path, summary: Path) -> None:
    """Reads a real population time course (:func:`jkonetstar.data.load_population`) into ``population`` (npz).

    ``source``: ``location``, ``time_column``, ``n_pcs``, ``particle_column``, ``test_location`` and the
    ``.h5ad``/scaling settings ``time_key``, ``representation``, ``standardize``, ``pair_key`` (absent: the
    library's defaults). The summary's ``time_values`` are integers when every time is one (file labels), else
    floats (e.g. an AnnData day 1.5); ``time_names`` (an ordered categorical time's names) when the data have them.
    """
    from jkonetstar.data import load_population

    optional = {key: source[key] for key in ("time_key", "representation", "standardize", "pair_key")
                if key in source}
    data = load_population(source["location"], time_column=source["time_column"], n_pcs=source["n_pcs"],
                           particle_column=source["particle_column"], test_path=source["test_location"],
                           **optional)
    counts = np.bincount(data["t"])
    log.info("%s: %d points in d = %d, %d snapshots of sizes %s; particle ids: %s; pre-split: %s",
             source["location"], len(data["x"]), data["x"].shape[1], len(counts), counts.tolist(),
             "particle" in data, "test" in data)
    save_npz(population, **data)
    values = np.asarray(data["time_values"], np.float64)
    integral = bool(np.all(values == np.round(values)))
    save_json(summary, {
        "dataset": dataset,
        "source": source["location"],
        "n_points": int(len(data["x"])),
        "dim": int(data["x"].shape[1]),
        "time_values": [int(v) if integral else float(v) for v in values],
        **({"time_names": [str(n) for n in data["time_names"]]} if "time_names" in data else {}),
        "points_per_snapshot": [int(c) for c in counts],
        "particle_ids": "particle" in data,
        "test_points": int(data["test"].sum()) if "test" in data else None,
    })


def couple(*, population: Path, seed: int, split: Mapping, couplings: Mapping, density: Mapping,
           pairing: str | None, given_split: bool = False, train: Path, test: Path, train_population: Path,
           mixtures: Path, summary: Path) -> None:
    """Splits a population, couples its consecutive training snapshots and fits the Gaussian-mixture densities.

    Args:
        population: a population npz (``x``, ``t``, optional ``particle`` and, read with ``given_split``, ``test``).
        seed: seeds the split, the shuffles and the mixtures (a real dataset's ``split_seed``, else the run's).
        split, couplings, density: keyword arguments of :func:`jkonetstar.pipeline.prepare_training_data`;
            ``split`` may instead hold ``holdout``, an inner snapshot label: the leave-one-timepoint-out
            protocol (:func:`jkonetstar.pipeline.leave_one_out`), which draws no split.
        pairing: what the data are (:data:`jkonetstar.couplings.PAIRINGS`; None: paired with particle ids,
            else independent).
        given_split: real data: use the file's own train/test split where it has one
            (:func:`jkonetstar.pipeline.given_split`), else split by trajectory; the summary then starts with
            the settings (synthetic runs: with the pairing of their path).
        train, test, train_population, mixtures, summary: output paths (the arrays of
            :class:`jkonetstar.training.TrainingData`; the test and training populations; the mixtures; JSON).
    """
    from jkonetstar import density as density_lib
    from jkonetstar import pipeline

    data = load_npz(population, required=("x", "t"))
    options, head = {}, {"pairing": pairing}
    split = dict(split)
    holdout = split.pop("holdout", None)
    if holdout is not None:  # leave-one-timepoint-out (pipeline.leave_one_out): no split is drawn
        data, test_population = pipeline.leave_one_out(data, int(holdout))
        options, head = {"test_population": test_population}, {"holdout": int(holdout)}
        log.info("leave-one-out: snapshot %d held out; %d training cells, test = full snapshots %s", holdout,
                 len(data["x"]), np.unique(test_population["t"]).tolist())
    elif given_split:
        data, test_population = pipeline.given_split(data)
        options, head = {"test_population": test_population, "split_by": "trajectory"}, {}
    prepared = pipeline.prepare_training_data(data, int(seed), pairing=pairing, **options, **split, **couplings,
                                              **density)
    log.info("%s", prepared.summary)
    # Real times of the snapshots travel with the test and training populations (pipeline.time_scales).
    times = {"time_values": np.asarray(data["time_values"])} if "time_values" in data else {}
    reference = pipeline.no_motion(prepared.x_test, prepared.t_test)
    log.info("no-motion reference (x_{t+1} = x_t) on the test split: one-step W1 %s, mean %.4g",
             np.round(reference["w1_per_step"], 5).tolist(), reference["w1_mean"])
    save_npz(train, **prepared.train._asdict())  # read by jkonetstar.training.TrainingData.load
    save_npz(test, x=prepared.x_test, t=prepared.t_test, **times)
    save_npz(train_population, x=prepared.x_train, t=prepared.t_train, **times)  # for the JKOnet baselines
    save_npz(mixtures, **density_lib.mixtures_to_arrays(prepared.mixtures))
    save_json(summary, {**head, **split, **couplings, **density, **prepared.summary,
                        "no_motion_w1_per_step": reference["w1_per_step"], "no_motion_w1_mean": reference["w1_mean"]})


# ---- training and evaluation ----


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _write_csv(path: Path, rows: Sequence[Mapping]) -> None:
    """Writes records as CSV the way ``pandas.DataFrame(rows).to_csv(index=False)`` does, without importing
    pandas: columns in order of appearance, an absent or NaN value empty, floats by ``repr``, and a column of
    integers with a missing value written as floats (pandas' float64 column); pandas itself for other values."""
    simple = (type(None), bool, int, float, str, np.bool_, np.integer, np.float64)
    if not all(isinstance(value, simple) for row in rows for value in row.values()):
        import pandas as pd  # e.g. float32 values, which pandas keeps in a float32 column

        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def integer(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))

    formats = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        present = [v for v in values if not _missing(v)]
        as_float = any(isinstance(v, (float, np.floating)) for v in present) or (
            len(present) < len(values) and present and all(integer(v) for v in present))
        formats[column] = (lambda v: repr(float(v))) if as_float else str

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(columns) + "\n")
        f.writelines(",".join("" if _missing(row.get(c)) else formats[c](row.get(c)) for c in columns) + "\n"
                     for row in rows)


def train(*, solver: str, seed: int, hp: Mapping, couplings: Path, test: Path, train_population: Path,
          model: Path, history: Path, fit: Path) -> None:
    """Fits one method on a coupled dataset (synthetic or real) and records its one-step W1 on the test split.

    Args:
        solver: the method's name (:func:`jkonetstar.pipeline.get_method`).
        hp: keyword arguments of :func:`jkonetstar.training.fit` (``features``: its ``feature_options``) or
            of :func:`jkonetstar.baselines.fit_jkonet` (with the baseline's ``predict_step``).
        couplings, test, train_population: the couplings job's outputs.
        model, history, fit: output paths (parameters, per-epoch history CSV, fit summary JSON).
    """
    from jkonetstar import pipeline, training

    settings = dict(hp)
    settings["hidden"] = tuple(settings["hidden"])
    spec = pipeline.get_method(solver)
    test_data = load_npz(test, required=("x", "t"))
    if spec.family == "jkonet":
        # The JKOnet baselines fit a transport map per step on the training trajectories, not on couplings.
        predict_options = {"step": settings.pop("predict_step"), "inner_steps": settings["inner_steps"],
                           "inner_learning_rate": settings["inner_learning_rate"]}
        population = load_npz(train_population, required=("x", "t"))
        data, inputs = None, {"x_train": population["x"], "t_train": population["t"]}
        log.info("training baseline %s on %d training particles with %s", spec.name, len(population["x"]), settings)
    else:
        settings["feature_options"] = settings.pop("features")
        data, inputs, predict_options = training.TrainingData.load(couplings), {}, None
        log.info("training %s on %d coupled pairs with %s", spec.name, len(data.source), settings)
    result = pipeline.train(spec, data, test_data["x"], test_data["t"], int(seed), progress=log.info,
                            predict_options=predict_options, time_values=test_data.get("time_values"), **inputs,
                            **settings)
    rows = result.history
    log.info("status %s after %d epochs (compilation %.2f s)", result.status, len(rows), result.compile_seconds)
    pipeline.save_model(model, result.params, spec)
    _write_csv(history, rows)

    def column(name):  # a history column's values, absent and NaN ones left out (as pandas' sum and mean do)
        return [row[name] for row in rows if not _missing(row.get(name))]

    evaluated = column("w1")
    save_json(fit, {
        "status": result.status,
        "epochs_run": int(max(column("epoch"))),
        "compile_seconds": float(result.compile_seconds),
        "seconds_per_epoch": float(np.mean(column("seconds"))),
        "train_seconds": float(math.fsum(column("seconds"))),
        "eval_seconds": float(math.fsum(column("eval_seconds"))),
        "final_loss": float(rows[-1]["loss"]),
        "last_evaluated_w1": float(evaluated[-1]) if evaluated else float("nan"),
        "n_couplings": int(len(data.source)) if data is not None else 0,
    })


def evaluate(*, run: Mapping, tau: float, predict_options: Mapping | None, plots: Mapping, model: Path, fit: Path,
             test: Path, metrics: Path, levels: Path, predictions: Path, truth: Mapping | None = None,
             population: Path | None = None, couplings: Path | None = None) -> None:
    """Scores a trained run (one-step-ahead W1 on its test split) and draws its level curves and predictions.

    Metrics are written first, pictures after them (:func:`jkonetstar.plots.save_figure`: a picture never loses
    a metric).

    Args:
        run: the run's descriptors, the first keys of its metrics (``solver`` and ``seed`` among them; ``dim``:
            the data's where absent).
        truth: a synthetic run's true energies ``{potential, interaction, beta, dt}``: every prediction step is
            scored (:func:`jkonetstar.pipeline.evaluate_steps`), recovery metrics are added and the level
            curves set the learnt V against the true one on the ``plots["limits"]`` box. None for real data: the
            configured step is scored and the learnt V is drawn over the data window, with the snapshot times
            of ``population``.
        population: real data: the population file of the dataset (``x``, ``t``, ``time_values``).
        couplings: the couplings job's summary, whose no-motion reference (``x_{t+1} = x_t`` on the same test
            split, :func:`jkonetstar.pipeline.no_motion`) the metrics repeat with the ratio ``w1_ratio`` (model /
            reference); a model that does not beat it says so in the log.
        plots: picture settings (``grid_points``, ``max_points``, ``n_levels``, ``limits``).
        model, fit, test: the train and couplings jobs' outputs; metrics, levels, predictions: output paths.
    """
    from jkonetstar import pipeline

    solver, seed = run["solver"], int(run["seed"])
    params, spec = pipeline.load_model(model)
    fit_summary = load_json(fit)
    status = fit_summary["status"]
    test_data = load_npz(test, required=("x", "t"))
    x_test, t_test = test_data["x"], test_data["t"]
    dim = int(x_test.shape[1])
    run = dict(run) if "dim" in run else {**run, "dim": dim}
    labels = np.unique(t_test)
    times = test_data.get("time_values")  # real data: snapshot times (pipeline.time_scales), else evenly spaced
    extra: dict = {}
    if truth is None:
        steps = pipeline.one_step(params, spec, x_test, t_test, seed, tau=tau, predict_options=predict_options,
                                  time_values=times)
        scores = pipeline.evaluate(params, spec, x_test, t_test, seed, tau=tau, predict_options=predict_options,
                                   steps=steps, time_values=times)
        data = load_npz(population, required=("x", "t", "time_values"))
        time_values = data["time_values"]
        step = pipeline.make_predictor(params, spec, tau=tau, **(predict_options or {})).step
        log.info("one-step W1 per step %s (%s step, training status %s)", np.round(scores["w1_per_step"], 5).tolist(),
                 step, status)
        extra["predict_step"] = step
        extra["target_time_values"] = [_time_value(time_values[v]) for v in labels[1:]]
    else:
        scores, steps = pipeline.evaluate_steps(params, spec, x_test, t_test, seed, tau=tau,
                                                predict_options=predict_options, status=status, time_values=times)
        recovery = pipeline.recovery(params, spec, pipeline.recovery_points(x_test), potential=truth["potential"],
                                     interaction=truth["interaction"], beta=float(truth["beta"]), tau=tau,
                                     dt=float(truth["dt"]), status=status)
        for step, step_scores in scores["by_predict_step"].items():
            log.info("%s step: one-step W1 per step %s (training status %s)", step,
                     np.round(step_scores["w1_per_step"], 5).tolist(), status)
        if scores.get("implicit_converged") is False:
            log.warning("implicit step did not converge: residuals %s > tolerance %g",
                        scores["implicit_residual_per_step"], scores["implicit_tolerance"])
        scores = {**scores, "recovery": recovery}
    if couplings is not None:
        extra.update(_against_no_motion(scores, load_json(couplings), status))
    save_json(metrics, {**run, **fit_summary, **scores, "target_labels": [int(v) for v in labels[1:]], **extra})

    # Pictures, after the metrics are on disk.
    from jkonetstar import plots as plots_lib

    _, observed, predicted, _ = steps
    if truth is None:
        name = f"{run['dataset']}, {plots_lib.solver_label(solver)}, seed {seed}{_status_note(status)}"
        draw_levels = _real_levels(params, spec, data, labels, plots, name, solver)
        title = (f"{name}: one-step predictions ({extra['predict_step']} step) from the observed test points "
                 f"(mean W1 {scores['w1_mean']:.3g})"
                 + ("" if dim > 1 else "; d = 1, second axis 0"))
        observed, predicted = [_two_columns(o) for o in observed], [_two_columns(p) for p in predicted]
        names = _snapshot_names(data)
    else:
        name = (f"{truth['potential']} (interaction {truth['interaction']}, beta {truth['beta']}, d = {dim}), "
                f"{plots_lib.solver_label(solver)}{_status_note(status)}")
        draw_levels = _true_levels(params, spec, truth, tau, dim, plots, name, solver)
        names = None
        title = (f"{name}: one-step predictions ({scores['predict_step']} step) from the observed test particles "
                 f"(mean W1 {scores['w1_mean']:.3g})")
    plots_lib.save_figure(draw_levels, levels, log=log)
    plots_lib.save_figure(lambda: plots_lib.predictions_vs_observed(
        observed[1:], predicted, target_labels=labels[1:].tolist(), w1=scores["w1_per_step"], title=title,
        max_points=plots["max_points"], names=names), predictions, log=log)


def _time_value(value):
    """A snapshot time as JSON: an integer where it is one (days 0, 8, ...), else the float."""
    return int(value) if float(value).is_integer() else float(value)


def _time_text(value) -> str:
    """A snapshot time in a figure: 4 significant digits (days 0, 8, 16; 0.3333 for 8 hours in days)."""
    return f"{float(value):.4g}"


def _other_coordinates(dim: int) -> str:
    """The coordinates a two-coordinate picture of ``dim > 2`` data does not draw: ``x_3`` or ``x_3..x_<dim>``."""
    return "x_3" if dim == 3 else f"x_3..x_{dim}"


def _snapshot_names(data: Mapping, given: Sequence[str] | None = None, prefix: str = "t = ") -> list[str]:
    """Each snapshot label's name in a figure: ``given`` (a config's ``time_names``), else the data's own names
    (an ordered categorical time, e.g. ``day0-3``), else ``<prefix><time>``."""
    if given:
        return [str(name) for name in given]
    if "time_names" in data:
        return [str(name) for name in data["time_names"]]
    return [f"{prefix}{_time_text(value)}" for value in data["time_values"]]


def _against_no_motion(scores: Mapping, summary: Mapping, status: str) -> dict:
    """The no-motion reference of the run's test split and the model's ratio to it; logs a model that loses."""
    if "no_motion_w1_mean" not in summary:
        return {}
    reference = float(summary["no_motion_w1_mean"])
    ratio = scores["w1_mean"] / reference if reference > 0 else float("nan")
    if status == "ok" and not ratio < 1:
        log.warning("the learnt model does not beat the no-motion reference x_{t+1} = x_t: mean one-step W1 %.4g vs "
                    "%.4g (ratio %.3g); its energy explains none of the observed motion", scores["w1_mean"],
                    reference, ratio)
    return {"no_motion_w1_mean": reference, "no_motion_w1_per_step": summary["no_motion_w1_per_step"],
            "w1_ratio": ratio, "beats_no_motion": bool(ratio < 1)}


def _two_columns(points):
    points = np.asarray(points)
    return points if points.shape[1] >= 2 else np.concatenate([points, np.zeros_like(points)], axis=1)


def _true_levels(params, spec, truth, tau, dim, settings, name, solver):
    """The drawing of a synthetic run's true and learnt V (scaled by tau/dt, both centred) on a grid."""
    from jkonetstar import energies, pipeline, plots

    dt = float(truth["dt"])
    low, high = settings["limits"]
    axis = np.linspace(low, high, settings["grid_points"], dtype=np.float32)
    shape = (len(axis),) if dim == 1 else (len(axis), len(axis))
    grid = np.meshgrid(axis, axis) if dim > 1 else [axis]
    points = np.zeros((axis.size ** min(dim, 2), dim), np.float32)
    points[:, 0] = grid[0].ravel()
    if dim > 1:
        points[:, 1] = grid[1].ravel()
    v_true = energies.values("potential", truth["potential"], points).reshape(shape)
    v_learned, message = None, f"{solver} learns no time-independent potential"
    if getattr(spec, "potential", True) and not getattr(spec, "time_dependent", False):
        v_learned = pipeline.learned_potential(params, spec, points).reshape(shape)
        v_learned = (v_learned - v_learned.mean()) * (tau / dt)
        message = "learnt potential is not finite"
    learned_title = rf"learned $(\tau/dt)\,V_\theta$, $\tau/dt$ = {tau / dt:g}"

    def title(what):
        return f"{name}\n{what}: V is learnt up to a constant and scaled by dt/tau, so both are centred on their mean"

    if dim == 1:
        return lambda: plots.potential_profile(axis, v_true - v_true.mean(), v_learned, title=title("potential"),
                                               learned_label=learned_title, true_label="true V", message=message)
    return lambda: plots.level_curves(
        *grid, v_true - v_true.mean(), v_learned, n_levels=settings["n_levels"],
        title=title("level curves" + ("" if dim == 2 else f" (slice {_other_coordinates(dim)} = 0)")),
        true_title="true V", learned_title=learned_title, message=message)


def _data_grid(x, grid_points):
    """A grid over the first two coordinates of the data window, the other coordinates at the data mean:
    ``(grid_x, grid_y, points [grid_points^2, d])`` (d = 1: the second axis is unused)."""
    from jkonetstar import plots

    low, high = plots.data_window(x)
    second = (low[1], high[1]) if x.shape[1] > 1 else (low[0], high[0])
    grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], grid_points, dtype=np.float32),
                                 np.linspace(*second, grid_points, dtype=np.float32))
    points = np.tile(x.mean(axis=0).astype(np.float32), (grid_x.size, 1))
    points[:, 0] = grid_x.ravel()
    if x.shape[1] > 1:
        points[:, 1] = grid_y.ravel()
    return grid_x, grid_y, points


def _real_levels(params, spec, population, labels, settings, name, solver):
    """The drawing of a real-data run's learnt V on the first two coordinates over the data window (the others
    at the data mean; one panel per target time for a time-dependent potential)."""
    from jkonetstar import pipeline, plots

    x, time_values = population["x"], population["time_values"]
    dim = x.shape[1]
    grid_x, grid_y, points = _data_grid(x, settings["grid_points"])
    time_dependent = getattr(spec, "time_dependent", False)
    times = labels[1:].tolist() if time_dependent else [None]
    time_inputs = pipeline.time_scales(time_values).times  # what V(x, t) was trained with at each snapshot
    names = _snapshot_names(population)
    values, titles = [], []
    for label in times:
        v = pipeline.learned_potential(params, spec, points, None if label is None else float(time_inputs[label]))
        if v is not None:
            v = v.reshape(grid_x.shape)
            v = v - v[np.isfinite(v)].mean() if np.any(np.isfinite(v)) else v
        values.append(v)
        titles.append("learned V" if label is None else f"learned V(., {names[label]})")
    clouds = [x[population["t"] == label] for label in times] if time_dependent else [x]
    others = "" if dim <= 2 else f"; {_other_coordinates(dim)} at the data mean"
    return lambda: plots.potential_panels(
        grid_x, grid_y, values, titles=titles, points=clouds, n_levels=settings["n_levels"],
        title=f"{name}: level curves on the first two coordinates{others} (centred)",
        max_points=settings["max_points"], message=f"{solver} learns no potential")


# ---- tables ----

_SCALARS = ["w1_mean", "w1_std", "seconds_per_epoch", "compile_seconds", "epochs_run", "train_seconds",
            "eval_seconds", "final_loss", "last_evaluated_w1"]
_STEP_SCALARS = ["w1_mean", "w1_std"]  # metrics of every prediction step (the others: the configured step only)


def _step_values(scores: Mapping, labels: Sequence[int], implicit: bool) -> dict:
    values = {name: scores[name] for name in _STEP_SCALARS}
    values.update({f"w1_step_{label}": v for label, v in zip(labels, scores["w1_per_step"])})
    if implicit and "implicit_residual_per_step" in scores:
        values["implicit_max_residual"] = max(scores["implicit_residual_per_step"])
        values["implicit_converged"] = float(scores["implicit_converged"])
    return values


def _coupling_values(summary: Mapping) -> dict:
    # Wall-clock of the OT plans of all snapshot pairs (Sinkhorn: includes its jit compilation); the same
    # without the first pair (its compilation): the other pairs' mean times the number of pairs.
    seconds = summary["seconds_per_snapshot_pair"]
    values = {"coupling_seconds": sum(seconds),
              "coupling_seconds_warm": sum(seconds[1:]) / (len(seconds) - 1) * len(seconds) if len(seconds) > 1
              else sum(seconds),
              "n_couplings": sum(summary["pairs_per_target_snapshot"].values())}
    floors = summary.get("two_sample_w1_per_snapshot")
    if floors:  # independent snapshots: the floor of their one-step EMD
        values["two_sample_w1"] = sum(floors.values()) / len(floors)
    return values


def _run_rows(metrics: Mapping, run_columns: Sequence[str], coupling_summary: Mapping | None) -> list[dict]:
    """The tidy rows of one run: one per metric (and per prediction step, for runs scored with every step)."""
    run = {column: metrics[column] for column in run_columns}
    status, labels = metrics["status"], metrics["target_labels"]
    per_step = "by_predict_step" in metrics  # scored with every prediction step (jkonetstar.pipeline.evaluate_steps)
    values = {name: metrics[name] for name in _SCALARS}
    if coupling_summary is None:
        values["n_couplings"] = metrics["n_couplings"]
    if per_step and status == "diverged":  # never scored as if trained (the evaluation made its scores NaN already)
        values["last_evaluated_w1"] = float("nan")
    values["diverged"] = float(status == "diverged")
    if coupling_summary is not None:
        values.update(_coupling_values(coupling_summary))
    values.update(_step_values(metrics, labels, implicit=per_step))
    values.update(metrics.get("recovery", {}))  # learnt vs true energies (jkonetstar.pipeline.recovery)
    reference = metrics.get("no_motion_w1_mean")  # the no-motion reference x_{t+1} = x_t of the same test split
    if reference is not None:
        values.update(no_motion_w1_mean=reference, w1_ratio=metrics["w1_ratio"])
    if not per_step:
        return [{**run, "metric": name, "value": float(value)} for name, value in values.items()]
    chosen = metrics["predict_step"]
    rows = [{**run, "predict_step": chosen, "status": status, "metric": name, "value": float(value)}
            for name, value in values.items()]
    for step, scores in metrics["by_predict_step"].items():
        if step != chosen:
            rows += [{**run, "predict_step": step, "status": status, "metric": name,
                      "value": float("nan") if status == "diverged" else float(value)}
                     for name, value in _step_values(scores, labels, implicit=True).items()]
            if reference is not None:
                rows.append({**run, "predict_step": step, "status": status, "metric": "w1_ratio",
                             "value": scores["w1_mean"] / reference if reference > 0 else float("nan")})
    return rows


def table(*, metrics: Sequence[Path], run_columns: Sequence[str], table: Path, couplings: Sequence[Path] = (),
          histories: Sequence[Path] = (), history: Path | None = None) -> None:
    """One tidy table (a row per run and metric) of many runs' metrics, and of their training histories.

    Args:
        metrics: every run's metrics.json (the evaluate jobs').
        run_columns: the run descriptors that open every row (:data:`RUN_COLUMNS`, :data:`DATASET_RUN_COLUMNS`).
            Runs scored with every prediction step also get the columns ``predict_step`` and ``status``.
        couplings: per run, its couplings summary (coupling times and counts); else ``n_couplings`` of the fit.
        histories, history: per run, its history.csv, and the path of their concatenation with the descriptors.
        table: output path.
    """
    import pandas as pd

    rows = []
    summaries = couplings or [None] * len(metrics)
    for metrics_path, couplings_path in zip(metrics, summaries, strict=True):
        summary = load_json(couplings_path) if couplings_path is not None else None
        rows += _run_rows(load_json(metrics_path), run_columns, summary)
    columns = [*run_columns, *(["predict_step", "status"] if rows and "predict_step" in rows[0] else []), "metric",
               "value"]
    frame = pd.DataFrame(rows, columns=columns)
    diverged = frame.loc[frame["metric"] == "diverged"]
    log.info("%d runs, %d rows; diverged runs: %d", len(metrics), len(frame), int(diverged["value"].sum()))
    log.info("mean one-step W1 per solver (over seeds):\n%s",
             frame[frame.metric == "w1_mean"].groupby("solver")["value"].agg(["mean", "std", "count"]))
    with atomic_path(table) as tmp:
        frame.to_csv(tmp, index=False)
    if history is not None:
        frames = []
        for metrics_path, history_path in zip(metrics, histories, strict=True):
            run = {column: load_json(metrics_path)[column] for column in run_columns}
            part = pd.read_csv(history_path)
            frames.append(part.assign(**run)[[*run_columns, *[c for c in part.columns if c not in run_columns]]])
        with atomic_path(history) as tmp:
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


# ---- figures ----


def _save_figure(fig, png: Path, pdf: Path) -> None:
    import matplotlib.pyplot as plt

    for path, kind in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
    plt.close(fig)


def figure(*, experiment: str, table: Path, history: Path, grid: Mapping, solvers: Mapping, data: Mapping,
           extra: Mapping, protocol: str, png: Path, pdf: Path, summary: Path) -> None:
    """The figure of one experiment (exp1 = paper Figure 3, exp2, exp3, ablation, pairing) and its seed summary.

    ``grid``, ``solvers``, ``data``, ``extra`` and ``protocol``: the config slices of its caption
    (:func:`jkonetstar.figures.experiment_caption`).
    """
    import pandas as pd

    from jkonetstar import figures

    full_table = pd.read_csv(table)
    rows = figures.configured_step_rows(full_table)  # each run scored with its configured prediction step
    steps = rows[rows["metric"] == "diverged"].groupby("solver")["predict_step"].first().to_dict()
    caption = figures.experiment_caption(experiment, grid=grid, solvers=solvers, data=data, extra=extra,
                                         protocol=protocol, steps=steps)
    if experiment not in figures.FIGURES:
        raise ValueError(f"unknown experiment {experiment!r}: choose one of {list(figures.FIGURES)}")
    fig = figures.FIGURES[experiment](full_table, rows, pd.read_csv(history), grid, data, caption)
    with atomic_path(summary) as tmp:
        figures.seed_summary(full_table).to_csv(tmp, index=False)
    _save_figure(fig, png, pdf)
    log.info("wrote %s", [png, pdf, summary])


def prediction_figure(*, table: Path, grid: Mapping, protocol: str, prediction_table: Path, png: Path,
                      pdf: Path) -> None:
    """Exp. 4.1's JKOnet* MLP runs predicted with the explicit and the implicit step: table and figure."""
    import pandas as pd

    from jkonetstar import figures

    rows = figures.prediction_table(pd.read_csv(table))
    with atomic_path(prediction_table) as tmp:
        rows.to_csv(tmp, index=False)
    fig = figures.prediction_figure(rows, potential_order=grid.get("potentials"), solver_order=grid.get("solvers"),
                                    caption=figures.prediction_caption(grid, protocol))
    _save_figure(fig, png, pdf)
    log.info("%d rows; wrote %s", len(rows), [prediction_table, png, pdf])


def rna_table(*, metrics: Sequence[Path], protocol: Mapping[str, str], table: Path) -> None:
    """The single-cell RNA table (paper Sec. 4.4): this reproduction beside the published results.

    For each solver: the one-step-ahead EMD (W1) mean +- std over the time steps of every seed, and mean +- std
    over the per-seed means (the two readings of the paper's 0.623 +- 0.04 and 0.624 +- 0.007, paper.md
    section 5.2), then the published rows with their sources (:func:`jkonetstar.figures.published`).
    ``protocol``: per solver, how this reproduction measured it.
    """
    import pandas as pd

    from jkonetstar import figures

    runs = pd.DataFrame([load_json(path) for path in metrics])
    rows = []
    for solver, group in runs.groupby("solver", sort=False):
        group = group.sort_values("seed")
        name = figures.RNA_ALGORITHMS.get(solver, solver)
        source = f"this reproduction ({protocol[solver]})"
        for _, run in group.iterrows():
            steps = np.asarray(run["w1_per_step"], float)
            rows.append(dict(algorithm=name, solver=solver, statistic=f"over time steps, seed {run['seed']}",
                             emd_mean=float(steps.mean()), emd_std=float(steps.std()), n=len(steps),
                             seeds=str(run["seed"]), train_seconds=float(run["train_seconds"]),
                             status=run["status"], source=source))
        means = group["w1_mean"].to_numpy(float)
        rows.append(dict(algorithm=name, solver=solver, statistic="over seed means",
                         emd_mean=float(means.mean()), emd_std=float(means.std()) if len(means) > 1 else math.nan,
                         n=len(means), seeds=" ".join(str(s) for s in group["seed"]),
                         train_seconds=float(group["train_seconds"].mean()),
                         status=",".join(sorted(set(group["status"]))), source=source))
    for entry in figures.published("rna"):
        rows.append(dict(algorithm=entry["algorithm"], solver="", statistic="published", emd_mean=entry["emd_mean"],
                         emd_std=entry["emd_std"], n=math.nan, seeds="", train_seconds=math.nan, status="",
                         source=entry["source"]))
    frame = pd.DataFrame(rows)
    log.info("\n%s", frame[["algorithm", "statistic", "emd_mean", "emd_std", "source"]].to_string())
    with atomic_path(table) as tmp:
        frame.to_csv(tmp, index=False)


PROTOCOLS = ("one-step", "leave-one-out")
"""The protocols of the EB benchmark (rule rna_protocols): the paper's 60/40 one-step one and the field's
leave-one-timepoint-out one; ``published.csv`` holds the published rows of each as experiment
``rna_protocols/<protocol>``."""


def protocol_rows(runs: Sequence[Mapping], protocol: str, sources: Mapping[str, str]) -> list[dict]:
    """One row per method of a protocol's reruns: the mean over seeds of each seed's mean W1 (over the time steps,
    or over the left-out snapshots) and the std over seeds (NaN for one seed); ``no_motion_mean``, the same mean
    of the no-motion reference x_{t+1} = x_t on the same transitions, and ``ratio``, the mean over it.
    ``sources``: per solver, how it was measured (the ``source`` column)."""
    from jkonetstar import figures

    groups: dict[str, dict[int, list[Mapping]]] = {}
    for run in runs:
        groups.setdefault(run["solver"], {}).setdefault(int(run["seed"]), []).append(run)

    def seed_means(seeds: Mapping[int, list], key: str) -> np.ndarray:  # per seed, the mean of the runs' values
        return np.array([np.mean([v for run in seed_runs for v in run.get(key, [math.nan])])
                         for _, seed_runs in sorted(seeds.items())])

    rows = []
    for solver, seeds in groups.items():
        means, no_motion = seed_means(seeds, "w1_per_step"), float(seed_means(seeds, "no_motion_w1_per_step").mean())
        rows.append(dict(method=figures.RNA_ALGORITHMS.get(solver, solver), solver=solver, protocol=protocol,
                         mean=float(means.mean()), std=float(means.std()) if len(means) > 1 else math.nan,
                         n_seeds=len(means), source=sources[solver], provenance="rerun", no_motion_mean=no_motion,
                         ratio=float(means.mean()) / no_motion))
    return rows


def rna_protocols(*, one_step: Sequence[Path], leave_one_out: Sequence[Path], protocol: Mapping[str, object],
                  table: Path, png: Path, pdf: Path) -> None:
    """The EB benchmark under both protocols: ``rna_protocols.csv`` (columns ``method``, ``solver``, ``protocol``,
    ``mean``, ``std``, ``n_seeds``, ``source``, ``provenance`` = rerun | published, and for reruns
    ``no_motion_mean`` and ``ratio``, :func:`protocol_rows`) and its figure.

    Args:
        one_step, leave_one_out: the ``metrics.json`` of the runs of each protocol.
        protocol: ``"one-step"``: per solver how it was measured; ``"leave-one-out"``: how the protocol ran.
    """
    import pandas as pd

    from jkonetstar import figures

    one_step_runs = [load_json(path) for path in one_step]
    loo_runs = [load_json(path) for path in leave_one_out]
    for run in loo_runs:
        if len(run["w1_per_step"]) != 1:
            raise ValueError(f"a leave-one-out run scores one transition, got {len(run['w1_per_step'])} "
                             f"(dataset {run.get('dataset')}, holdout {run.get('holdout')})")
    one_step_sources = {solver: f"this reproduction ({text})" for solver, text in protocol["one-step"].items()}
    loo_sources = {run["solver"]: f"this reproduction ({protocol['leave-one-out']})" for run in loo_runs}
    rows = (protocol_rows(one_step_runs, "one-step", one_step_sources)
            + protocol_rows(loo_runs, "leave-one-out", loo_sources))
    for name in PROTOCOLS:
        rows += [dict(method=entry["algorithm"], solver="", protocol=name, mean=entry["emd_mean"],
                      std=entry["emd_std"], n_seeds=math.nan, source=entry["source"], provenance="published")
                 for entry in figures.published(f"rna_protocols/{name}")]
    frame = pd.DataFrame(rows)
    log.info("\n%s", frame[["method", "protocol", "provenance", "mean", "std", "n_seeds", "ratio"]].to_string())
    losing = frame[(frame["provenance"] == "rerun") & ~(frame["ratio"] < 1)]
    for _, row in losing.iterrows():
        log.warning("%s under the %s protocol does not beat the no-motion reference: W1 %.4g vs %.4g", row["method"],
                    row["protocol"], row["mean"], row["no_motion_mean"])
    with atomic_path(table) as tmp:
        frame.to_csv(tmp, index=False)
    _save_figure(figures.protocols_figure(frame), png, pdf)
    log.info("wrote %s", [table, png, pdf])


def rna_figure(*, population: Path, test: Path, model: Path, table: Path, seed: int, solver: str, tau: float,
               plots: Mapping, time_names: Sequence[str] | None, predict_options: Mapping | None, protocol: str,
               png: Path, pdf: Path) -> None:
    """The single-cell RNA figure (paper Fig. 5) of one run: data, interpolated predictions and learnt V."""
    import jax
    import pandas as pd

    from jkonetstar import figures, models, pipeline
    from jkonetstar import plots as plots_lib

    data = load_npz(population, required=("x", "t", "time_values"))
    test_data = load_npz(test, required=("x", "t"))
    params, spec = models.load_params(model)
    rows = pd.read_csv(table)
    labels = np.unique(data["t"])
    names = _snapshot_names(data, time_names)
    observed = [data["x"][data["t"] == label] for label in labels]
    # Interpolated predictions: the midpoint between each observed test cell at t_k and its one-step prediction
    # at t_{k+1} (straight-line interpolation of the one-step predictor, drawn between the two days).
    predict = pipeline.make_predictor(params, spec, tau=tau, **(predict_options or {}))
    key_eval = jax.random.fold_in(jax.random.key(int(seed)), 1)
    interpolated = []
    for source, target in zip(labels[:-1], labels[1:]):
        x = test_data["x"][test_data["t"] == source]
        interpolated.append(0.5 * (x + predict(jax.random.fold_in(key_eval, int(source)), x, int(target))))
    low, high = plots_lib.data_window(data["x"])
    grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], plots["grid_points"], dtype=np.float32),
                                 np.linspace(low[1], high[1], plots["grid_points"], dtype=np.float32))
    points = np.zeros((grid_x.size, data["x"].shape[1]), np.float32)
    points[:, 0], points[:, 1] = grid_x.ravel(), grid_y.ravel()
    potentials = {}
    if spec.potential:
        for label in (labels[1:] if spec.time_dependent else labels[:1]):
            v = np.asarray(models.potential_values(params, spec, points, int(label))).reshape(grid_x.shape)
            potentials[int(label)] = v - v.mean()
    caption = figures.rna_caption(rows, solver=solver, seed=int(seed), last_label=int(labels[-1]),
                                  step=predict.step, protocol=protocol)
    fig = figures.rna_figure(observed, interpolated, grid_x, grid_y, potentials, time_names=names,
                             max_points=plots["max_points"], n_levels=plots["n_levels"],
                             title="Single-cell RNA (embryoid body): paper Fig. 5", caption=caption)
    _save_figure(fig, png, pdf)
    log.info("wrote %s", [png, pdf])


# ---- energies out ----


def _test_membership(x, t, x_test, t_test) -> np.ndarray:
    """Which rows ``(x, t)`` of a population are the rows of its test split, matched by exact coordinates (as
    float32) and label; a row repeated k times in the population is a test row as often as the test split has it."""
    from collections import Counter

    def keys(points, labels):
        points = np.ascontiguousarray(np.asarray(points, np.float32))
        return [(int(label), row.tobytes()) for label, row in zip(np.asarray(labels), points)]

    left = Counter(keys(x_test, t_test))
    test = np.zeros(len(x), bool)
    for i, key in enumerate(keys(x, t)):
        if left[key] > 0:
            left[key] -= 1
            test[i] = True
    unmatched = sum(left.values())
    if unmatched:
        log.warning("%d test cells are not rows of the population; they are left out of the split column", unmatched)
    return test


def _energy_values(params, spec, x, t, time_inputs):
    """The learnt V ``[n]`` and drift ``-grad V`` ``[n, d]`` at cells ``x`` with labels ``t`` (a time-dependent V
    at each cell's own snapshot time input); None, None for a method that learns no potential."""
    from jkonetstar import models, pipeline

    if spec.family != "jkonet" and not spec.potential:
        return None, None
    potential = np.full(len(x), np.nan)
    drift = np.zeros(x.shape, np.float64)
    points = np.asarray(x, np.float32)
    groups = np.unique(t) if getattr(spec, "time_dependent", False) else [None]
    for label in groups:
        rows = slice(None) if label is None else np.flatnonzero(t == label)
        time = None if label is None else float(time_inputs[int(label)])
        potential[rows] = pipeline.learned_potential(params, spec, points[rows], time)
        if spec.family == "jkonet":
            gradient = models.mlp_input_gradient(params["potential"], points[rows])
        else:
            gradient = models.energy_gradients(params, spec, "potential", points[rows], time)
        drift[rows] = -np.asarray(gradient, np.float64)
    return potential, drift


def _energy_picture(params, spec, data, potential, time_inputs, name, solver, *, grid_points=100,
                    max_points=2000, n_levels=15):
    """The drawing of energy.png: the learnt V over the first two coordinates (the others at the data mean; one
    panel per snapshot for a time-dependent V, with that snapshot's cells) and the cells coloured by time; d = 1:
    the V profile over the coordinate with the cells at their V."""
    import matplotlib.pyplot as plt
    from matplotlib import colors

    from jkonetstar import pipeline
    from jkonetstar import plots as plots_lib

    x, t, time_values = data["x"], data["t"], data["time_values"]
    dim = x.shape[1]
    labels = np.unique(t)
    names = _snapshot_names(data, prefix="")
    time_dependent = getattr(spec, "time_dependent", False)
    panels = labels.tolist() if time_dependent else [None]
    cmap = plt.get_cmap("viridis")
    norm = colors.BoundaryNorm(np.arange(len(time_values) + 1) - 0.5, cmap.N)
    keep = np.random.default_rng(0).permutation(len(x))[:max_points * len(panels)]
    low, high = plots_lib.data_window(x)
    learns = potential is not None

    def grid_values(points, label):
        time = None if label is None else float(time_inputs[int(label)])
        return pipeline.learned_potential(params, spec, points, time)

    def draw():
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.8, 4.6), layout="constrained",
                                 squeeze=False)
        scatter = None
        if dim == 1:
            axis = np.linspace(low[0], high[0], grid_points, dtype=np.float32)
        else:
            grid_x, grid_y, points = _data_grid(x, grid_points)
            values = [grid_values(points, label) if learns else None for label in panels]
            levels = plots_lib.shared_levels([v for v in values if v is not None], n_levels)
        for k, (ax, label) in enumerate(zip(axes[0], panels)):
            rows = keep if label is None else keep[t[keep] == label]
            colour = dict(c=t[rows], cmap=cmap, norm=norm, s=8, alpha=0.8, edgecolors="none")
            if dim == 1:
                if learns:
                    ax.plot(axis, grid_values(axis[:, None], label), color="black", lw=1.2, label="learned V")
                    scatter = ax.scatter(x[rows, 0], potential[rows], **colour)
                else:
                    scatter = ax.scatter(x[rows, 0], np.zeros(len(rows)), **colour)
                ax.set_xlabel(r"$x_1$")
                ax.set_ylabel("learned V")
            else:
                if values[k] is not None and np.all(np.isfinite(values[k])):
                    contour = ax.contour(grid_x, grid_y, values[k].reshape(grid_x.shape), levels=levels,
                                         cmap="Greys", linewidths=0.8)
                    ax.clabel(contour, fontsize="x-small", fmt="%.3g")
                else:
                    ax.text(0.5, 0.95, f"{solver} learns no potential" if not learns else "learnt V is not finite",
                            ha="center", va="top", transform=ax.transAxes)
                scatter = ax.scatter(x[rows, 0], x[rows, 1], **colour)
                ax.set_xlabel(r"$x_1$")
                ax.set_ylabel(r"$x_2$")
            if label is not None:
                ax.set_title(f"learned V(., t = {names[int(label)]})", fontsize="small")
        bar = fig.colorbar(scatter, ax=axes[0].tolist(), ticks=np.arange(len(time_values)))
        bar.ax.set_yticklabels(names)
        bar.set_label("time")
        others = "" if dim <= 2 else f"; {_other_coordinates(dim)} at the data mean"
        what = "potential profile" if dim == 1 else f"level curves on x_1, x_2{others}"
        fig.suptitle(f"{name}: learned V\n{what}; cells coloured by time", fontsize="small")
        return fig

    return draw


def energy(*, run: Mapping, tau: float, model: Path, population: Path, test: Path, h5ad: Path, csv: Path,
           png: Path, fit: Path | None = None) -> None:
    """Writes a real-data run's learnt energy at the dataset's cells, for single-cell tools.

    Every cell of ``population`` as read gets ``obs`` ``time`` (its snapshot's real time), ``potential`` (the
    learnt V, :func:`jkonetstar.pipeline.learned_potential`; a time-dependent V at the cell's own snapshot time
    input, :func:`jkonetstar.pipeline.time_scales`) and ``split`` ("test" for the rows of the run's test split,
    else "train"), and ``obsm`` ``X_input`` (the coordinates the model saw) and ``drift`` (``-grad V``). A method
    that learns no potential gets potential NaN and drift zeros. ``uns``: method, seed, dataset, tau (and
    time_values, time_names where the data have them).

    Args:
        run: the run's descriptors (``dataset``, ``solver``, ``seed``).
        tau: the method's tau (the energies approximate ``dt / tau`` times the true ones).
        model, fit: the train job's outputs (fit: the training status, named in the picture's title).
        population: the dataset's population npz (``x``, ``t``, ``time_values``, optional ``time_names``).
        test: the couplings job's test population of the run (``x``, ``t``).
        h5ad, csv, png: outputs (:func:`jkonetstar.data.write_energy_h5ad`, :func:`~jkonetstar.data.write_energy_csv`
            and the picture).
    """
    from jkonetstar import data as data_lib
    from jkonetstar import pipeline

    solver, seed = run["solver"], int(run["seed"])
    params, spec = pipeline.load_model(model)
    status = load_json(fit)["status"] if fit is not None else "ok"
    data = load_npz(population, required=("x", "t", "time_values"))
    x, t, time_values = np.asarray(data["x"]), np.asarray(data["t"]), np.asarray(data["time_values"], np.float64)
    test_data = load_npz(test, required=("x", "t"))
    is_test = _test_membership(x, t, test_data["x"], test_data["t"])
    time_inputs = pipeline.time_scales(time_values).times
    potential, drift = _energy_values(params, spec, x, t, time_inputs)
    if potential is None:
        log.info("%s learns no potential: potential NaN and drift zeros for every cell", solver)
    elif not np.all(np.isfinite(potential)):
        log.warning("learnt potential not finite at %d of %d cells", int(np.sum(~np.isfinite(potential))), len(x))
    obs = {"time": time_values[t],
           "potential": np.full(len(x), np.nan) if potential is None else potential,
           "split": np.where(is_test, "test", "train")}
    obsm = {"X_input": x, "drift": np.zeros(x.shape, np.float64) if drift is None else drift}
    uns = {"method": str(solver), "seed": seed, "dataset": str(run["dataset"]), "tau": float(tau),
           "time_values": time_values}
    if "time_names" in data:
        uns["time_names"] = np.asarray([str(n) for n in data["time_names"]])
    data_lib.write_energy_h5ad(h5ad, obs=obs, obsm=obsm, uns=uns)
    data_lib.write_energy_csv(csv, obs=obs, obsm=obsm)
    log.info("wrote the learnt energy of %d cells (%d test) to %s and %s", len(x), int(is_test.sum()), h5ad, csv)

    from jkonetstar import plots as plots_lib

    name = f"{run['dataset']}, {plots_lib.solver_label(solver)}, seed {seed}{_status_note(status)}"
    plots_lib.save_figure(_energy_picture(params, spec, data, potential, time_inputs, name, solver), png, log=log)

"""The pipeline's stages as functions of arrays and settings: what the workflow scripts and the CLI run.

simulate_population -> prepare_training_data (split, couplings, densities) -> train -> evaluate.
Each stage takes plain settings (the config's slice for that stage) and an explicit seed, so the
Snakemake adapters in ``workflow/scripts`` and ``python -m jkonetstar`` share one implementation.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jkonetstar import couplings as couplings_lib
from jkonetstar import density, methods, metrics, models, training
from jkonetstar.simulate import simulate, simulate_independent, to_population
from jkonetstar.split import split


class _LazyModule:
    """A library module imported on first attribute access: the JKOnet baselines (Flax, optax) cost an evaluation
    job of a JKOnet* solver half a second of imports it never uses."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)


baselines = _LazyModule("jkonetstar.baselines")

__all__ = [
    "get_method",
    "save_model",
    "load_model",
    "learned_potential",
    "simulate_population",
    "TimeScales",
    "time_scales",
    "Prepared",
    "prepare_training_data",
    "given_split",
    "make_predictor",
    "train",
    "evaluate",
    "evaluate_steps",
    "recovery_points",
    "recovery",
    "one_step",
]


def simulate_population(seed: int, *, potential: str, interaction: str = "none", beta: float = 0.0,
                        n_particles: int, dim: int, n_steps: int = 5, dt: float = 0.01,
                        independent: bool = False) -> dict[str, np.ndarray]:
    """Returns the synthetic population ``{"x", "t", "particle"}`` of :func:`jkonetstar.simulate.simulate`.

    ``independent``: every snapshot from its own population
    (:func:`jkonetstar.simulate.simulate_independent`), so the particle ids differ across snapshots.
    """
    run = simulate_independent if independent else simulate
    snapshots = run(jax.random.key(seed), potential=potential, interaction=interaction, beta=beta,
                    n_particles=n_particles, dim=dim, n_steps=n_steps, dt=dt)
    x, t, particle = to_population(snapshots, independent=independent)
    return {"x": x.astype(np.float32), "t": t, "particle": particle}


class TimeScales(NamedTuple):
    """Snapshot times in the dataset's time unit: what the JKO step of a transition and ``V(x, t)`` see.

    Attributes:
        unit: the time unit, the median gap ``median_k (time_values[k + 1] - time_values[k])`` over all the
            dataset's snapshots.
        time_values: ``[T + 1]`` the real time of snapshot label ``k`` (float64).
        times: ``[T + 1]`` the time input of snapshot ``k``: ``(time_values[k] - time_values[0]) / unit``.
    """

    unit: float
    time_values: np.ndarray
    times: np.ndarray

    def step_scale(self, source: int, target: int) -> float:
        """The JKO step of the transition ``source -> target`` in units of ``tau``:
        ``(time_values[target] - time_values[source]) / unit`` (``target`` need not be ``source + 1``)."""
        return float((self.time_values[target] - self.time_values[source]) / self.unit)


def time_scales(time_values) -> TimeScales:
    """Returns the :class:`TimeScales` of snapshots at real times ``time_values`` ``[T + 1]``.

    The convention for snapshot labels ``0..T`` observed at times ``time_values`` (strictly increasing): the
    time unit is the median gap between consecutive time values, taken over *all* the dataset's snapshots
    (pass the full ``time_values``, before any snapshot is left out); the transition from label ``k`` to a
    later label ``k'`` (``k' = k + 1``, or further on where snapshots between them are left out) is one JKO
    step of ``tau * (time_values[k'] - time_values[k]) / unit``, and a time-dependent potential receives
    ``(time_values[k] - time_values[0]) / unit`` at snapshot ``k``. Evenly spaced times (e.g. days 0, 8, 16
    or the labels themselves) give every step a scale of exactly 1 and the time inputs ``0..T``: the same
    numbers as no ``time_values`` at all.

    Raises:
        ValueError: ``time_values`` not a 1-D array of at least two finite, strictly increasing numbers.
    """
    values = np.asarray(time_values, np.float64)
    if values.ndim != 1 or len(values) < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise ValueError(f"time_values must be at least two finite, strictly increasing numbers (one per snapshot "
                         f"label), got {np.asarray(time_values).tolist()}")
    unit = float(np.median(np.diff(values)))
    return TimeScales(unit, values, (values - values[0]) / unit)


def _scales_of(time_values, labels) -> TimeScales | None:
    """:func:`time_scales` of ``time_values`` (None stays None), checked to cover the snapshot ``labels``."""
    if time_values is None:
        return None
    scales = time_scales(time_values)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(scales.times)):
        raise ValueError(f"snapshot labels {np.unique(labels).tolist()} need one time value each, got "
                         f"{len(scales.times)} time_values")
    return scales


class Prepared(NamedTuple):
    """Training couplings with densities, the held-out test population, the mixtures and a summary."""

    train: training.TrainingData
    x_test: np.ndarray
    t_test: np.ndarray
    x_train: np.ndarray
    t_train: np.ndarray
    mixtures: dict
    summary: dict


def prepare_training_data(population: dict, seed: int, *, test_ratio: float = 0.5, split_by: str = "trajectory",
                          pairing: str | None = None, method: str = "exact", epsilon: float | None = None,
                          block_size: int | None = 1000, sinkhorn_threshold: float = 1e-3,
                          sinkhorn_max_iterations: int = 2000, sparsify_relax: bool = False, n_components: int = 10,
                          min_det: float = 0.0, floor: float = 1e-5, test_population: dict | None = None) -> Prepared:
    """Splits ``population``, couples consecutive training snapshots and evaluates densities at the targets.

    ``pairing`` (:data:`jkonetstar.couplings.PAIRINGS`) is what the data are. ``"paired"`` and
    ``"shuffled"`` rows with particle ids are ordered by id within every snapshot first (row i is one
    trajectory). ``"independent"`` snapshots share no particle: they are split within every snapshot (a
    trajectory is one point), and an id seen in two snapshots is an error. Unless paired, the training
    snapshots are returned shuffled, as the couplings saw them (the JKOnet baselines' minibatches, rows
    i of every snapshot, then hold no trajectories either).

    Snapshots at real times (``population["time_values"]``, :func:`time_scales`): every coupling row gets the
    step scale of its transition (``tau_scale``: from the previous training snapshot to its target) and the
    time input of its target (``time_input``); without them, ones and the labels.

    Args:
        population: ``{"x" [n, d], "t" [n], optional "particle" [n], optional "time_values" [T + 1]}``: the
            whole time course, or its training part when ``test_population`` is given.
        seed: seeds the split, the shuffles and the mixtures.
        pairing: one of :data:`jkonetstar.couplings.PAIRINGS`; None: ``"paired"`` when ``population`` has
            particle ids, else ``"independent"``.
        test_population: a pre-made split, the held-out ``{"x", "t"}``; nothing is drawn for the split, and
            ``test_ratio`` and ``split_by`` are unused.
        Others: see :func:`jkonetstar.split.split`, :func:`jkonetstar.couplings.couple` and
            :func:`jkonetstar.density.fit_per_snapshot`.

    Raises:
        ValueError: an unknown pairing (``"unpaired"``: use ``"shuffled"``), a particle id twice in one
            snapshot, or ``"independent"`` data whose snapshots share an id; and the errors of the stages.
    """
    if pairing is None:
        pairing = "paired" if population.get("particle") is not None else "independent"
    couplings_lib.check_pairing(pairing)
    x, t, particle = _ordered_by_particle(population, pairing)
    rng_split, rng_pairing = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if pairing == "independent":
        split_by = "population"
    if test_population is None:
        (x_train, t_train), (x_test, t_test) = split(rng_split, x, t, particle, test_ratio=test_ratio, by=split_by)
    else:
        (x_train, t_train), (x_test, t_test) = (x, t), (test_population["x"], test_population["t"])
        split_by = "given"
    if pairing != "paired":  # couple() shuffles again with the same generator: a uniform order either way
        order = np.concatenate([rng_pairing.permutation(np.flatnonzero(t_train == label))
                                for label in np.unique(t_train)])
        x_train, t_train = np.asarray(x_train)[order], np.asarray(t_train)[order]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", couplings_lib.SparsifyWarning)
        pairs, seconds = couplings_lib.couple(x_train, t_train, method=method, epsilon=epsilon, block_size=block_size,
                                              pairing=pairing, rng=rng_pairing, sinkhorn_threshold=sinkhorn_threshold,
                                              sinkhorn_max_iterations=sinkhorn_max_iterations,
                                              sparsify_relax=sparsify_relax)
    relaxed = [str(w.message) for w in caught if issubclass(w.category, couplings_lib.SparsifyWarning)]
    for w in caught:  # hand every warning on, the relaxed thresholds included (they also go in the summary)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    mixtures = density.fit_per_snapshot(x_train, t_train, n_components=n_components, seed=seed, min_det=min_det)
    rho, grad_rho = density.log_density_gradient_at_targets(mixtures, pairs, floor=floor)
    scales = _scales_of(population.get("time_values"), t)
    per_row = {}
    if scales is not None:
        labels = np.unique(t_train)
        previous = dict(zip(labels[1:].tolist(), labels[:-1].tolist()))
        targets = np.asarray(pairs.time).tolist()
        per_row = dict(tau_scale=np.array([scales.step_scale(previous[k], k) for k in targets], np.float32),
                       time_input=np.asarray(scales.times[np.asarray(pairs.time, np.int64)], np.float32))
    data = training.TrainingData(
        source=np.asarray(pairs.source, np.float32), target=np.asarray(pairs.target, np.float32),
        time=np.asarray(pairs.time, np.int32), weight=np.asarray(pairs.weight, np.float32),
        rho=rho, grad_rho=grad_rho, **per_row,
    )
    labels, counts = np.unique(pairs.time, return_counts=True)
    summary = {
        "pairing": pairing,
        "split_by": split_by,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "pairs_per_target_snapshot": {str(k): int(c) for k, c in zip(labels, counts)},
        "seconds_per_snapshot_pair": [float(s) for s in seconds],
        "relaxed_sparsification": relaxed,
        "components_per_snapshot": {str(k): int(len(g.weights)) for k, g in mixtures.items()},
    }
    if pairing == "independent":
        summary["two_sample_w1_per_snapshot"] = two_sample_w1(x_train, t_train, x_test, t_test, seed)
    return Prepared(data, np.asarray(x_test, np.float32), np.asarray(t_test, np.int32),
                    np.asarray(x_train, np.float32), np.asarray(t_train, np.int32), mixtures, summary)


def two_sample_w1(x_train, t_train, x_test, t_test, seed: int) -> dict[str, float]:
    """Per snapshot label after the first, W1 between the test snapshot and as many training particles of the same
    snapshot drawn at random: two independent samples of one law. On independent snapshots even the true
    dynamics, moving the test particles at t, scores about this against the different test particles at t + 1
    (the floor of the one-step EMD there)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    floors = {}
    for label in np.unique(t_test)[1:]:
        test, train = np.asarray(x_test)[t_test == label], np.asarray(x_train)[t_train == label]
        n = min(len(test), len(train))
        if n:
            floors[str(int(label))] = metrics.wasserstein1(test[rng.choice(len(test), n, replace=False)],
                                                           train[rng.choice(len(train), n, replace=False)])
    return floors


def given_split(population: dict) -> tuple[dict, dict | None]:
    """Returns ``(train, test)`` (``x``, ``t`` and ``particle`` where present) of a population read by
    :func:`jkonetstar.data.load_population`: its rows by the ``"test"`` mask of pre-split data, else
    ``(all rows, None)``; the arguments ``population`` and ``test_population`` of :func:`prepare_training_data`.
    The population's ``time_values`` (all snapshots) go with ``train``."""
    if "test" not in population:
        return _parts(population, slice(None), None)
    test = np.asarray(population["test"], bool)
    return _parts(population, ~test, test)


def _parts(population: dict, train_rows, test_rows) -> tuple[dict, dict | None]:
    """The rows ``train_rows`` and ``test_rows`` (masks or slices; None: no test part) of a population's ``x``,
    ``t`` and ``particle``; the population's ``time_values`` (all snapshots) go with the training part."""
    arrays = {key: np.asarray(population[key]) for key in ("x", "t", "particle") if key in population}
    extra = {"time_values": np.asarray(population["time_values"])} if "time_values" in population else {}
    train = {**{k: v[train_rows] for k, v in arrays.items()}, **extra}
    return train, None if test_rows is None else {k: v[test_rows] for k, v in arrays.items()}


def leave_one_out(population: dict, holdout: int) -> tuple[dict, dict]:
    """Returns ``(train, test)`` of the leave-one-timepoint-out protocol (TrajectoryNet, TorchCFM) for the inner
    snapshot label ``holdout``: ``train`` every row of every other snapshot (the labels keep their numbers, so
    the transition over the gap, ``holdout - 1`` to ``holdout + 1``, is one JKO step of the whole gap by
    :func:`time_scales` on the population's full ``time_values``, which go with ``train``), ``test`` the
    *full* snapshots ``holdout - 1`` and ``holdout``: the evaluation pushes the first, observed in training,
    one step to the held-out time and compares it with the whole held-out population. The arguments
    ``population`` and ``test_population`` of :func:`prepare_training_data`.

    Raises:
        ValueError: ``holdout`` not an inner label (the first and last snapshots cannot be left out), or
            pre-split data (the protocol uses every cell).
    """
    if "test" in population:
        raise ValueError("leave-one-out uses every cell of every snapshot: give the data unsplit (no test part)")
    t = np.asarray(population["t"])
    labels = np.unique(t)
    inner = labels[1:-1].tolist()
    if int(holdout) not in inner:
        raise ValueError(f"holdout {holdout}: the left-out snapshot must be an inner one of the labels "
                         f"{labels.tolist()}, one of {inner}")
    previous = labels[labels.tolist().index(int(holdout)) - 1]
    return _parts(population, t != holdout, (t == previous) | (t == holdout))


def _ordered_by_particle(population: dict, pairing: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Returns ``(x, t, particle)`` of ``population``, rows by time then particle id for paired data with ids."""
    x, t = np.asarray(population["x"]), np.asarray(population["t"])
    particle = population.get("particle")
    if particle is None:
        return x, t, None
    particle = np.asarray(particle)
    if particle.shape != t.shape:
        raise ValueError(f"particle ids of shape {particle.shape} do not match the time labels' {t.shape}")
    for label in np.unique(t):
        ids, counts = np.unique(particle[t == label], return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"particle id {ids[counts > 1][0]} appears {counts.max()} times in snapshot {label}")
    if pairing == "independent":
        ids, counts = np.unique(particle, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"pairing 'independent', but particle id {ids[counts > 1][0]} is in {counts.max()} "
                             "snapshots: use pairing 'paired' or 'shuffled' for data with trajectories")
        return x, t, particle
    order = np.lexsort((particle, t))
    return x[order], t[order], particle[order]


Method = methods.Method


def get_method(name: str) -> Method:
    """Returns the spec of a registered method (:data:`jkonetstar.methods.METHODS`); raises ValueError listing them."""
    return methods.get(name)


def save_model(path, params: dict, spec: Method) -> None:
    """Saves learnt parameters of a solver or baseline (npz, no pickle)."""
    if spec.family == "jkonet":
        baselines.save_jkonet_params(path, params, spec.name)
    else:
        models.save_params(path, params, spec)


def load_model(path) -> tuple[dict, Method]:
    """Returns ``(params, spec)`` saved by :func:`save_model`; raises ValueError naming a bad file."""
    from jkonetstar.io import load_npz

    arrays = load_npz(path, required=("solver",))
    if str(arrays["solver"]) in methods.BASELINES:
        params, name = baselines.load_jkonet_params(path)
        return params, get_method(name)
    return models.load_params(path)


def learned_potential(params: dict, spec: Method, x, t: float | None = None) -> np.ndarray | None:
    """Returns the learnt V at points ``x`` ``[n, d]`` (``None`` if the method learns no potential)."""
    if spec.family == "jkonet":
        return np.asarray(baselines.potential_values(params, x))
    if not spec.potential:
        return None
    return np.asarray(_potential_jit(params, spec, x, None if t is None else float(t)))


_step_jit = jax.jit(models.predict_step_info, static_argnames=("spec", "tau", "step", "max_iterations", "solver"))
_potential_jit = jax.jit(models.potential_values, static_argnames=("spec", "t"))
_gradients_jit = jax.jit(models.energy_gradients, static_argnames=("spec", "term", "t"))


class Predictor:
    """``predict(key, x, t_target, t_source=None) -> [n, d]``, one jitted step of the learnt dynamics.

    For JKOnet* solvers it keeps the fixed-point diagnostics of every call (``residuals``, ``iterations``;
    residual 0 and one iteration for the explicit step), so an evaluation can report an unconverged
    implicit step instead of scoring it silently.

    With ``time_values`` (:func:`time_scales`) the step from ``x`` at label ``t_source`` (None:
    ``t_target - 1``) to ``t_target`` is one step of ``tau * (time_values[t_target] - time_values[t_source]) /
    unit``, and a time-dependent potential receives the target's time input; without, one step of ``tau``
    and the label ``t_target``.
    """

    def __init__(self, params: dict, spec: Method, tau: float, options: dict, time_values=None):
        self.params, self.spec, self.tau, self.options = params, spec, tau, dict(options)
        self.time_scales = None if time_values is None else time_scales(time_values)
        self.residuals: list[float] = []
        self.iterations: list[int] = []
        if spec.family == "jkonet-star":
            unknown = set(self.options) - set(PREDICT_OPTIONS)
            if unknown:
                raise ValueError(f"unknown prediction options {sorted(unknown)} for solver {spec.name!r}: "
                                 f"choose from {list(PREDICT_OPTIONS)}")
            self.options.setdefault("predict_step", models.default_predict_step(spec))
            self.options.setdefault("implicit_solver", models.IMPLICIT_SOLVERS[0])

    @property
    def step(self) -> str:
        """The prediction step: ``explicit``/``implicit`` (JKOnet*), ``explicit``/``jko`` (baselines)."""
        return self.options.get("predict_step", self.options.get("step", "jko"))

    def __call__(self, key, x, t_target, t_source=None):
        if self.time_scales is None:
            return self.transition(key, x, t_target)
        target = int(t_target)
        source = target - 1 if t_source is None else int(t_source)
        if not 0 <= source < target < len(self.time_scales.times):
            raise ValueError(f"cannot step from snapshot {source} to {target}: need 0 <= t_source < t_target < "
                             f"{len(self.time_scales.times)} (the number of time_values)")
        return self.transition(key, x, target, tau_scale=self.time_scales.step_scale(source, target),
                               time_input=float(self.time_scales.times[target]))

    def transition(self, key, x, t_target, *, tau_scale: float | None = None, time_input: float | None = None):
        """One step to label ``t_target`` of ``tau * tau_scale`` (None: ``tau``), a time-dependent potential at
        time ``time_input`` (None: the label); e.g. with a coupling row's ``tau_scale`` and ``time_input``."""
        x = np.asarray(x, np.float32)
        tau = self.tau if tau_scale is None else self.tau * float(tau_scale)
        if self.spec.family == "jkonet":
            return np.asarray(baselines.predict_jkonet(self.params, self.spec.name, key, x, tau=tau,
                                                       **self.options))
        opts = self.options
        time_input = None if time_input is None or not self.spec.time_dependent else float(time_input)
        info = _step_jit(self.params, self.spec, key, x, int(t_target), tau=tau, step=opts["predict_step"],
                         tolerance=opts.get("implicit_tolerance", models.IMPLICIT_TOLERANCE),
                         max_iterations=opts.get("implicit_max_iterations", models.IMPLICIT_MAX_ITERATIONS),
                         solver=opts["implicit_solver"], time_input=time_input)
        self.residuals.append(float(info.residual))
        self.iterations.append(int(info.iterations))
        return np.asarray(info.y)

    def convergence(self) -> dict:
        """The fixed-point diagnostics of the calls so far: residual and iterations per call, converged or not."""
        if self.spec.family == "jkonet" or self.step != "implicit":
            return {}
        tolerance = self.options.get("implicit_tolerance", models.IMPLICIT_TOLERANCE)
        return {
            "implicit_residual_per_step": self.residuals,
            "implicit_iterations_per_step": self.iterations,
            "implicit_tolerance": float(tolerance),
            "implicit_solver": self.options["implicit_solver"],
            "implicit_converged": bool(all(r <= tolerance for r in self.residuals)),
        }


PREDICT_OPTIONS = methods.PREDICT_OPTIONS
"""Prediction settings of the JKOnet* solvers (evaluation settings: choosing them never retrains)."""


def make_predictor(params: dict, spec: Method, *, tau: float = 1.0, time_values=None, **options) -> Predictor:
    """Returns a :class:`Predictor`, one jitted step of the learnt dynamics.

    ``time_values``: the real time of every snapshot label (:func:`time_scales`; None: evenly spaced labels,
    one step of ``tau`` each). ``options`` go to :func:`jkonetstar.baselines.predict_jkonet` for the baselines
    (``inner_steps``, ``inner_learning_rate``, ``step``); JKOnet* solvers take ``predict_step`` (``explicit`` or ``implicit``;
    default :func:`jkonetstar.models.default_predict_step`), ``implicit_tolerance``,
    ``implicit_max_iterations`` and ``implicit_solver`` (:data:`jkonetstar.models.IMPLICIT_SOLVERS`).
    """
    return Predictor(params, spec, tau, options, time_values)


def evaluate(params: dict, spec: Method, x_test: np.ndarray, t_test: np.ndarray, seed: int, *,
             tau: float = 1.0, cumulative: bool = False, predict_options: dict | None = None,
             steps: tuple | None = None, time_values=None) -> dict:
    """Returns the one-step-ahead W1 per transition (and its mean and std), plus the cumulative W1 if asked.

    Each observed test snapshot is moved one step by the learnt dynamics and compared (exact W1,
    Euclidean cost) with the observed next one; ``cumulative`` rolls out from the first snapshot.
    ``steps``: the output of :func:`one_step` for the same arguments, when the caller has it already
    (e.g. to draw the predictions), so they are not computed twice. With the implicit step the result also
    holds the fixed-point diagnostics (``implicit_converged``, the residual and iterations per transition).
    ``time_values``: the real time of every snapshot label (:func:`time_scales`): each transition between
    consecutive observed test labels steps its own gap; None: evenly spaced labels.
    """
    predict = make_predictor(params, spec, tau=tau, time_values=time_values, **(predict_options or {}))
    key = _evaluation_key(seed)
    if steps is None:
        steps = metrics.one_step_predictions(_from_previous(predict, t_test), x_test, t_test, key) + (
            predict.convergence(),)
    _, observed, predicted, convergence = steps
    one_step = np.array([metrics.wasserstein1(y, x) for y, x in zip(predicted, observed[1:])])
    result = {
        "w1_per_step": one_step.tolist(),
        "w1_mean": float(np.mean(one_step)),
        "w1_std": float(np.std(one_step)),
        **convergence,
    }
    if cumulative:
        rollout = metrics.cumulative_w1(_from_previous(predict, t_test), x_test, t_test, key)
        result.update(cumulative_w1_per_step=rollout.tolist(), cumulative_w1_mean=float(np.mean(rollout)))
    return result


def _evaluation_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 1)


def _from_previous(predict: Predictor, labels) -> Callable:
    """``predict`` called ``(key, x, t_target)`` from the observed label before ``t_target`` in ``labels``."""
    observed = np.unique(np.asarray(labels)).tolist()
    previous = dict(zip(observed[1:], observed[:-1]))
    return lambda key, x, t_target: predict(key, x, t_target, t_source=previous.get(int(t_target)))


def one_step(params: dict, spec: Method, x_test: np.ndarray, t_test: np.ndarray, seed: int, *, tau: float = 1.0,
             predict_options: dict | None = None,
             time_values=None) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], dict]:
    """Returns ``(labels, observed, predicted)`` of :func:`jkonetstar.metrics.one_step_predictions` and the
    predictor's fixed-point diagnostics: the very predictions :func:`evaluate` scores (same keys and
    ``time_values``), e.g. to draw them."""
    predict = make_predictor(params, spec, tau=tau, time_values=time_values, **(predict_options or {}))
    return metrics.one_step_predictions(_from_previous(predict, t_test), x_test, t_test, _evaluation_key(seed)) + (
        predict.convergence(),)


RECOVERY_GRID_POINTS = 40
"""Grid points per axis of the recovery grid (d <= 2)."""


def recovery_points(x: np.ndarray, n_points: int = RECOVERY_GRID_POINTS) -> np.ndarray:
    """Where learnt and true energies are compared: a grid over the data's bounding box (``n_points^d``
    points) for d <= 2, the data points themselves above (a grid would be empty where the data lives)."""
    x = np.asarray(x, np.float32)
    if x.shape[1] > 2:
        return x
    axes = [np.linspace(lo, hi, n_points, dtype=np.float32) for lo, hi in zip(x.min(axis=0), x.max(axis=0))]
    return np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, x.shape[1])


def recovery(params: dict, spec: Method, points: np.ndarray, *, potential: str, interaction: str = "none",
             beta: float = 0.0, tau: float = 1.0, dt: float = 0.01, status: str = "ok") -> dict[str, float]:
    """Returns how well a synthetic run recovered the true energy terms (the metrics of one tidy table row each).

    The learnt energies approximate ``dt / tau`` times the true ones (:func:`jkonetstar.models.jkonet_star_loss`),
    so the learnt gradients are compared after scaling by ``tau / dt``, at ``points`` (:func:`recovery_points`):
    ``<term>_grad_{nmae,cosine,corr,rel_error}`` of :func:`jkonetstar.metrics.gradient_recovery` for V (and W
    at the differences ``z = points``), and for solvers with an internal energy ``beta_hat`` (raw), ``beta_recovered``
    (raw, scaled), ``beta_error`` (its error), ``beta_abs_recovered`` and ``beta_abs_error`` (with |beta|, which the
    prediction uses). Time-dependent potentials are skipped (no true V(x, t) exists). Every value is NaN for a
    diverged run (``status="diverged"``).
    """
    from jkonetstar import energies

    points = np.asarray(points, np.float32)
    scale = tau / dt
    values: dict[str, float] = {}
    for term, name in (("potential", potential), ("interaction", interaction)):
        if spec.family == "jkonet":
            if term != "potential":
                continue
            learned = np.asarray(models.mlp_input_gradient(params["potential"], points))
        else:
            if not getattr(spec, term) or spec.time_dependent:
                continue
            learned = np.asarray(_gradients_jit(params, spec, term, points))
        true = energies.gradients(term, name, points)
        values.update({f"{term}_grad_{k}": v for k, v in metrics.gradient_recovery(learned, true, scale).items()})
    if spec.internal:
        beta_hat = float(params["beta"])
        values.update(beta_hat=beta_hat, beta_recovered=beta_hat * scale, beta_error=beta_hat * scale - beta,
                      beta_abs_recovered=abs(beta_hat) * scale, beta_abs_error=abs(beta_hat) * scale - beta)
    return _not_scored(values) if status == "diverged" else values


def _not_scored(scores: dict) -> dict:
    """``scores`` with every number NaN (lists too), for a diverged run; diagnostics (bools, strings) kept."""
    def nan(value):
        if isinstance(value, bool) or not isinstance(value, (int, float, list, dict)):
            return value
        if isinstance(value, list):
            return [nan(v) for v in value]
        if isinstance(value, dict):
            return {k: nan(v) for k, v in value.items()}
        return float("nan")

    return {k: v if k.startswith("implicit_") else nan(v) for k, v in scores.items()}


def evaluate_steps(params: dict, spec: Method, x_test: np.ndarray, t_test: np.ndarray, seed: int, *,
                   tau: float = 1.0, predict_options: dict | None = None,
                   status: str = "ok", time_values=None) -> tuple[dict, tuple]:
    """Returns ``(scores, steps)``: :func:`evaluate` with the configured prediction step, and its predictions.

    ``scores`` also holds ``predict_step`` (the configured one) and ``by_predict_step``: for the JKOnet* MLP
    solvers the scores of *every* step of :data:`jkonetstar.models.PREDICT_STEPS` (the same trained model,
    so comparing the steps never retrains), for the others the configured step alone. ``steps`` is the
    :func:`one_step` output of the configured step (e.g. to draw it).

    A run whose training ``status`` is ``"diverged"`` is never scored as if trained: every score is NaN, and
    the scores of its last finite parameters are kept apart under ``last_finite_parameters``.
    ``time_values``: as in :func:`evaluate`.
    """
    options = dict(predict_options or {})
    chosen = make_predictor(params, spec, tau=tau, **options).step
    alternatives = [chosen]
    if spec.family == "jkonet-star" and not spec.closed_form:
        alternatives += [step for step in models.PREDICT_STEPS if step != chosen]
    by_step, drawn = {}, None
    for step in alternatives:
        step_options = options if step == chosen else {**options, "predict_step": step}
        steps = one_step(params, spec, x_test, t_test, seed, tau=tau, predict_options=step_options,
                         time_values=time_values)
        by_step[step] = evaluate(params, spec, x_test, t_test, seed, tau=tau, predict_options=step_options,
                                 steps=steps, time_values=time_values)
        drawn = steps if step == chosen else drawn
    scores = {**by_step[chosen], "predict_step": chosen, "by_predict_step": by_step}
    if status == "diverged":
        scores = {**_not_scored(scores), "predict_step": chosen, "last_finite_parameters": scores}
    return scores, drawn


def no_motion(x_test: np.ndarray, t_test: np.ndarray) -> dict:
    """Scores of the no-motion reference ``x_{t+1} = x_t``, the same metric, split and steps as :func:`evaluate`:
    one-step W1 from each observed test snapshot to the next one, i.e. W1 between consecutive snapshots.

    A learnt model whose ``w1_mean`` is not below this one's explains nothing of the motion: the tables report
    the ratio (``w1_ratio``, model / reference; below 1 the model beats standing still). It depends on the test
    split only, so the couplings job computes it once for every run on that split.
    """
    w1 = metrics.one_step_w1(lambda key, x, t_target: x, x_test, t_test, _evaluation_key(0))
    return {"w1_per_step": w1.tolist(), "w1_mean": float(np.mean(w1)), "w1_std": float(np.std(w1))}


def train(spec: Method, data: training.TrainingData | None, x_test: np.ndarray, t_test: np.ndarray, seed: int,
          *, x_train: np.ndarray | None = None, t_train: np.ndarray | None = None,
          predict_options: dict | None = None, progress: Callable[[str], None] | None = None,
          time_values=None, **settings) -> training.FitResult:
    """Fits a method, evaluating the mean one-step W1 on the test split every ``eval_every`` epochs.

    JKOnet* solvers train on the couplings ``data`` with :func:`jkonetstar.training.fit`; the JKOnet
    baselines on the training trajectories ``(x_train, t_train)`` with
    :func:`jkonetstar.baselines.fit_jkonet`. ``settings`` are those functions' keyword arguments.

    ``time_values``: the real time of every snapshot label (:func:`time_scales`), for the evaluations and the
    baselines' per-transition steps (``tau_scales``: between consecutive labels of ``t_train``). The
    couplings carry their own steps (``data.tau_scale``, :func:`prepare_training_data`).
    """
    tau = settings.get("tau", 1.0)
    # JKOnet* MLP solvers: the history holds W1 with the default (implicit) step and, as w1_explicit, with the
    # explicit one, so that the prediction step stays an evaluation setting (choosing it never retrains).
    both = spec.family == "jkonet-star" and not spec.closed_form and not predict_options

    def mean_w1(params):
        if both:
            return {("w1" if step == models.default_predict_step(spec) else f"w1_{step}"):
                    evaluate(params, spec, x_test, t_test, seed, tau=tau, time_values=time_values,
                             predict_options={"predict_step": step})["w1_mean"]
                    for step in models.PREDICT_STEPS}
        return evaluate(params, spec, x_test, t_test, seed, tau=tau, predict_options=predict_options,
                        time_values=time_values)["w1_mean"]

    key = jax.random.fold_in(jax.random.key(seed), 0)
    if spec.family == "jkonet":
        if x_train is None or t_train is None:
            raise ValueError(f"baseline {spec.name!r} trains on trajectories: pass x_train and t_train")
        # Unbalanced (real) snapshots are subsampled to the smallest, seeded by the run's seed.
        snapshots = baselines.snapshots_from_population(x_train, t_train, rng=np.random.default_rng(seed))
        scales = _scales_of(time_values, t_train)
        if scales is not None:
            labels = np.unique(np.asarray(t_train)).tolist()
            settings["tau_scales"] = [scales.step_scale(a, b) for a, b in zip(labels[:-1], labels[1:])]
        return baselines.fit_jkonet(key, spec.name, snapshots, evaluate=mean_w1, progress=progress, **settings)
    select, ratio = settings.pop("select", "last"), settings.pop("validation_ratio", 0.1)
    if select not in SELECTIONS:
        raise ValueError(f"unknown select {select!r}: choose one of {list(SELECTIONS)}")
    if select == "validation" and not spec.closed_form:
        data, held_out = validation_split(data, ratio, seed)
        # scored with the step whose residual the loss is
        step = models.default_predict_step(spec, settings.get("gradient_at"))
        settings["validate"] = functools.partial(_validation_w1, spec=spec, held_out=held_out, tau=tau, seed=seed,
                                                 predict_step=step)
        if progress:
            progress(f"model selection on {len(held_out.source)} held-out coupling rows of the training data")
    return training.fit(key, spec, data, evaluate=mean_w1, progress=progress, **settings)


SELECTIONS = ("last", "validation")
"""Which parameters a JKOnet* MLP run keeps: the last epoch's (the paper) or the best on held-out training rows."""


def validation_split(data: training.TrainingData, ratio: float, seed: int):
    """Returns ``(kept, held_out)`` coupling rows: a ``ratio`` share of every target snapshot's rows held out
    (at least one, seeded by ``seed``) for model selection; the test split is never touched."""
    if not 0 < ratio < 1:
        raise ValueError(f"validation_ratio must be in (0, 1), got {ratio!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    time = np.asarray(data.time)
    held = np.zeros(len(time), bool)
    for label in np.unique(time):
        rows = np.flatnonzero(time == label)
        if len(rows) < 2:
            continue
        held[rng.choice(rows, size=max(1, round(ratio * len(rows))), replace=False)] = True
    keep = jax.tree.map(lambda a: np.asarray(a)[~held], data)
    out = jax.tree.map(lambda a: np.asarray(a)[held], data)
    # each kept snapshot pair's weights sum to 1 again
    for label in np.unique(np.asarray(keep.time)):
        rows = np.asarray(keep.time) == label
        keep.weight[rows] = keep.weight[rows] / keep.weight[rows].sum()
    return keep, out


def _validation_w1(params, *, spec, held_out, tau, seed, predict_step):
    """Mean over transitions of W1(one ``predict_step`` from the held-out rows' sources, their targets); each
    transition steps its rows' ``tau_scale``, a time-dependent potential at their ``time_input``."""
    predict = make_predictor(params, spec, tau=tau, predict_step=predict_step)
    key = jax.random.fold_in(_evaluation_key(seed), 2)
    time = np.asarray(held_out.time)
    values = []
    for label in np.unique(time):
        rows = time == label
        first = np.flatnonzero(rows)[0]
        y = predict.transition(jax.random.fold_in(key, int(label)), np.asarray(held_out.source)[rows], int(label),
                               tau_scale=float(np.asarray(held_out.tau_scale)[first]),
                               time_input=float(np.asarray(held_out.time_input)[first]))
        values.append(metrics.wasserstein1(y, np.asarray(held_out.target)[rows]))
    return float(np.mean(values))

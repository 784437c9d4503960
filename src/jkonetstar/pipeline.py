"""The pipeline's stages as functions of arrays and settings: what the workflow scripts and the CLI run.

simulate_population -> prepare_training_data (split, couplings, densities) -> train -> evaluate.
Each stage takes plain settings (the config's slice for that stage) and an explicit seed, so the
Snakemake adapters in ``workflow/scripts`` and ``python -m jkonetstar`` share one implementation.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jkonetstar import baselines
from jkonetstar import couplings as couplings_lib
from jkonetstar import density, metrics, models, training
from jkonetstar.simulate import simulate, to_population
from jkonetstar.split import split

__all__ = [
    "get_method",
    "save_model",
    "load_model",
    "learned_potential",
    "simulate_population",
    "Prepared",
    "prepare_training_data",
    "make_predictor",
    "train",
    "evaluate",
    "one_step",
]


def simulate_population(seed: int, *, potential: str, interaction: str = "none", beta: float = 0.0,
                        n_particles: int, dim: int, n_steps: int = 5, dt: float = 0.01) -> dict[str, np.ndarray]:
    """Returns the synthetic population ``{"x", "t", "particle"}`` of :func:`jkonetstar.simulate.simulate`."""
    snapshots = simulate(jax.random.key(seed), potential=potential, interaction=interaction, beta=beta,
                         n_particles=n_particles, dim=dim, n_steps=n_steps, dt=dt)
    x, t, particle = to_population(snapshots)
    return {"x": x.astype(np.float32), "t": t, "particle": particle}


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
                          pairing: str = "paired", method: str = "exact", epsilon: float | None = None,
                          block_size: int | None = 1000, sinkhorn_threshold: float = 1e-3,
                          sinkhorn_max_iterations: int = 2000, sparsify_relax: bool = False, n_components: int = 10,
                          min_det: float = 0.0, floor: float = 1e-5) -> Prepared:
    """Splits ``population``, couples consecutive training snapshots and evaluates densities at the targets.

    Args:
        population: ``{"x" [n, d], "t" [n], optional "particle" [n]}``.
        seed: seeds the split, the unpaired shuffles and the mixtures.
        Others: see :func:`jkonetstar.split.split`, :func:`jkonetstar.couplings.couple` and
            :func:`jkonetstar.density.fit_per_snapshot`.
    """
    rng_split, rng_pairing = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    (x_train, t_train), (x_test, t_test) = split(rng_split, population["x"], population["t"],
                                                 population.get("particle"), test_ratio=test_ratio, by=split_by)
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
    data = training.TrainingData(
        source=np.asarray(pairs.source, np.float32), target=np.asarray(pairs.target, np.float32),
        time=np.asarray(pairs.time, np.int32), weight=np.asarray(pairs.weight, np.float32),
        rho=rho, grad_rho=grad_rho,
    )
    labels, counts = np.unique(pairs.time, return_counts=True)
    summary = {
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "pairs_per_target_snapshot": {str(k): int(c) for k, c in zip(labels, counts)},
        "seconds_per_snapshot_pair": [float(s) for s in seconds],
        "relaxed_sparsification": relaxed,
        "components_per_snapshot": {str(k): int(len(g.weights)) for k, g in mixtures.items()},
    }
    return Prepared(data, np.asarray(x_test, np.float32), np.asarray(t_test, np.int32),
                    np.asarray(x_train, np.float32), np.asarray(t_train, np.int32), mixtures, summary)


Method = models.SolverSpec | baselines.BaselineSpec


def get_method(name: str) -> Method:
    """Returns the spec of a JKOnet* solver or of a JKOnet baseline; raises ValueError listing both."""
    if name in baselines.BASELINES:
        return baselines.BASELINES[name]
    if name in models.SOLVERS:
        return models.SOLVERS[name]
    raise ValueError(f"unknown solver {name!r}: choose one of {[*models.SOLVERS, *baselines.BASELINES]}")


def save_model(path, params: dict, spec: Method) -> None:
    """Saves learnt parameters of a solver or baseline (npz, no pickle)."""
    if isinstance(spec, baselines.BaselineSpec):
        baselines.save_jkonet_params(path, params, spec.name)
    else:
        models.save_params(path, params, spec)


def load_model(path) -> tuple[dict, Method]:
    """Returns ``(params, spec)`` saved by :func:`save_model`; raises ValueError naming a bad file."""
    from jkonetstar.io import load_npz

    arrays = load_npz(path, required=("solver",))
    if str(arrays["solver"]) in baselines.BASELINES:
        params, name = baselines.load_jkonet_params(path)
        return params, get_method(name)
    return models.load_params(path)


def learned_potential(params: dict, spec: Method, x, t: float | None = None) -> np.ndarray | None:
    """Returns the learnt V at points ``x`` ``[n, d]`` (``None`` if the method learns no potential)."""
    if isinstance(spec, baselines.BaselineSpec):
        return np.asarray(baselines.potential_values(params, x))
    if not spec.potential:
        return None
    return np.asarray(models.potential_values(params, spec, x, t))


_predict_jit = jax.jit(models.predict, static_argnames=("spec", "tau"))


def make_predictor(params: dict, spec: Method, *, tau: float = 1.0, **options) -> Callable:
    """Returns ``predict(key, x, t_target) -> [n, d]``, one jitted step of the learnt dynamics.

    ``options`` go to :func:`jkonetstar.baselines.predict_jkonet` for the baselines (``inner_steps``,
    ``inner_learning_rate``, ``step``); JKOnet* solvers take none.
    """
    if isinstance(spec, baselines.BaselineSpec):
        return functools.partial(_predict_baseline, params, spec.name, tau, options)
    return functools.partial(_predict_one, params, spec, tau)


def _predict_baseline(params, name, tau, options, key, x, t_target):
    return np.asarray(baselines.predict_jkonet(params, name, key, np.asarray(x, np.float32), tau=tau, **options))


def _predict_one(params, spec, tau, key, x, t_target):
    return np.asarray(_predict_jit(params, spec, key, np.asarray(x, np.float32), int(t_target), tau=tau))


def evaluate(params: dict, spec: Method, x_test: np.ndarray, t_test: np.ndarray, seed: int, *,
             tau: float = 1.0, cumulative: bool = False, predict_options: dict | None = None,
             steps: tuple | None = None) -> dict:
    """Returns the one-step-ahead W1 per transition (and its mean and std), plus the cumulative W1 if asked.

    Each observed test snapshot is moved one step by the learnt dynamics and compared (exact W1,
    Euclidean cost) with the observed next one; ``cumulative`` rolls out from the first snapshot.
    ``steps``: the output of :func:`one_step` for the same arguments, when the caller has it already
    (e.g. to draw the predictions), so they are not computed twice.
    """
    predict = make_predictor(params, spec, tau=tau, **(predict_options or {}))
    key = _evaluation_key(seed)
    _, observed, predicted = steps if steps is not None else metrics.one_step_predictions(predict, x_test, t_test, key)
    one_step = np.array([metrics.wasserstein1(y, x) for y, x in zip(predicted, observed[1:])])
    result = {
        "w1_per_step": one_step.tolist(),
        "w1_mean": float(np.mean(one_step)),
        "w1_std": float(np.std(one_step)),
    }
    if cumulative:
        rollout = metrics.cumulative_w1(predict, x_test, t_test, key)
        result.update(cumulative_w1_per_step=rollout.tolist(), cumulative_w1_mean=float(np.mean(rollout)))
    return result


def _evaluation_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 1)


def one_step(params: dict, spec: Method, x_test: np.ndarray, t_test: np.ndarray, seed: int, *, tau: float = 1.0,
             predict_options: dict | None = None) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Returns ``(labels, observed, predicted)`` of :func:`jkonetstar.metrics.one_step_predictions`: the very
    predictions :func:`evaluate` scores (same keys), e.g. to draw them."""
    predict = make_predictor(params, spec, tau=tau, **(predict_options or {}))
    return metrics.one_step_predictions(predict, x_test, t_test, _evaluation_key(seed))


def train(spec: Method, data: training.TrainingData | None, x_test: np.ndarray, t_test: np.ndarray, seed: int,
          *, x_train: np.ndarray | None = None, t_train: np.ndarray | None = None,
          predict_options: dict | None = None, progress: Callable[[str], None] | None = None,
          **settings) -> training.FitResult:
    """Fits a method, evaluating the mean one-step W1 on the test split every ``eval_every`` epochs.

    JKOnet* solvers train on the couplings ``data`` with :func:`jkonetstar.training.fit`; the JKOnet
    baselines on the training trajectories ``(x_train, t_train)`` with
    :func:`jkonetstar.baselines.fit_jkonet`. ``settings`` are those functions' keyword arguments.
    """
    tau = settings.get("tau", 1.0)

    def mean_w1(params):
        return evaluate(params, spec, x_test, t_test, seed, tau=tau, predict_options=predict_options)["w1_mean"]

    key = jax.random.fold_in(jax.random.key(seed), 0)
    if isinstance(spec, baselines.BaselineSpec):
        if x_train is None or t_train is None:
            raise ValueError(f"baseline {spec.name!r} trains on trajectories: pass x_train and t_train")
        # Unbalanced (real) snapshots are subsampled to the smallest, seeded by the run's seed.
        snapshots = baselines.snapshots_from_population(x_train, t_train, rng=np.random.default_rng(seed))
        return baselines.fit_jkonet(key, spec.name, snapshots, evaluate=mean_w1, progress=progress, **settings)
    return training.fit(key, spec, data, evaluate=mean_w1, progress=progress, **settings)

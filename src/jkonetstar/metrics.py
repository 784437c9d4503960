"""Evaluation metrics: exact Wasserstein-1 distances between predicted and observed populations.

The paper's "EMD" (paper.md §1.0) is the one-step-ahead W1 on the test split: start from the
observed test population at t, apply one step of the learned dynamics, and compare with the
observed test population at t + 1.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import jax
import numpy as np
from jax import Array

from jkonetstar.couplings import exact_transport

__all__ = ["wasserstein1", "one_step_predictions", "one_step_w1", "cumulative_w1", "gradient_recovery"]

Predictor = Callable[[Array, np.ndarray, int], np.ndarray]


def wasserstein1(x: np.ndarray, y: np.ndarray) -> float:
    """Returns the exact W1 distance between the uniform empirical measures on ``x`` and ``y``.

    W1 = min_P sum_ij P_ij ||x_i - y_j||_2 over couplings P of the uniform marginals 1/n and 1/m
    (Euclidean cost, not squared), in float64. For n == m some optimal P is a permutation matrix / n
    (Birkhoff), so W1 is the optimal assignment cost / n, solved by
    ``scipy.optimize.linear_sum_assignment``; otherwise the network simplex of
    :func:`jkonetstar.couplings.exact_transport` (POT, the value ``ot.emd2`` returns). At
    n = m = 1000, d = 2 (benchmarks/bench_w1.py, 2 CPU cores) the assignment takes ~7 ms against ~43 ms for
    ``ot.emd2`` when comparing a one-step prediction with the next snapshot (the evaluation's case),
    about the same for independent samples of one law, and ~4.8x longer for very different clouds.

    Args:
        x: first point cloud, shape ``[n, d]``.
        y: second point cloud, shape ``[m, d]``.

    Returns:
        The distance, or NaN if either cloud has a non-finite entry (e.g. a diverged prediction).

    Raises:
        ValueError: for empty clouds or mismatched dimensions.
        RuntimeError: if the simplex stops before optimality.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected point clouds [n, d] and [m, d], got shapes {x.shape} and {y.shape}")
    if len(x) == 0 or len(y) == 0:
        raise ValueError(f"cannot compare an empty point cloud (sizes {len(x)} and {len(y)})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    if len(x) == len(y):
        cost = euclidean_costs(x, y)
        rows, cols = _linear_sum_assignment()(cost)
        return float(cost[rows, cols].mean())
    return exact_transport(x, y, metric="euclidean")[1]  # POT, imported there: only unequal clouds need it


def euclidean_costs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``||x_i - y_j||_2`` ``[n, m]`` in float64: the squared differences summed coordinate after coordinate, the
    operations and order of ``scipy.spatial.distance.cdist(x, y)`` (equal to the last bit), without importing
    ``scipy.spatial``; memory two ``[n, m]`` arrays whatever ``d``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    squared = np.zeros((len(x), len(y)))
    for k in range(x.shape[1]):
        squared += np.square(x[:, k, None] - y[None, :, k])
    return np.sqrt(squared, out=squared)


@functools.cache
def _linear_sum_assignment():
    """``scipy.optimize.linear_sum_assignment``, loaded from its compiled module alone when it can be found.

    Importing ``scipy.optimize`` costs 0.3-0.4 s (linprog, minimize, ... load with it), a tenth of an evaluate
    job; the assignment solver is the extension module ``scipy/optimize/_lsap``, which needs only numpy.
    Where that file is not found (another scipy layout), the public import.
    """
    package = importlib.util.find_spec("scipy")
    folders = (package.submodule_search_locations or []) if package is not None else []
    for path in (Path(f, "optimize", f"_lsap{suffix}") for f in folders for suffix in EXTENSION_SUFFIXES):
        if path.is_file():
            try:
                spec = importlib.util.spec_from_file_location("scipy.optimize._lsap", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module.linear_sum_assignment
            except (ImportError, AttributeError):
                break
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment


def one_step_predictions(
    predict: Predictor, x_test: np.ndarray, t_test: np.ndarray, key: Array
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Returns ``(labels, observed, predicted)``: one step of the learnt dynamics from each observed snapshot.

    ``labels`` are the sorted snapshot labels l_0 < ... < l_T of ``t_test``, ``observed[i]`` the test
    population X_{l_i}, and ``predicted[i] = predict(fold_in(key, l_i), X_{l_i}, l_{i+1})`` (T entries), the
    prediction to compare with ``observed[i + 1]``. Arguments as in :func:`one_step_w1`.
    """
    labels, observed = _populations(x_test, t_test)
    predicted = [np.asarray(predict(jax.random.fold_in(key, int(source)), observed[i], int(target)))
                 for i, (source, target) in enumerate(zip(labels[:-1], labels[1:]))]
    return labels, observed, predicted


def one_step_w1(predict: Predictor, x_test: np.ndarray, t_test: np.ndarray, key: Array) -> np.ndarray:
    """Returns the one-step-ahead W1 per transition, shape ``[T]``.

    For consecutive labels l_i < l_{i+1} of ``t_test`` (T + 1 labels in all), entry i is
    W1(predict(fold_in(key, l_i), X_{l_i}, l_{i+1}), X_{l_{i+1}}), where X_l is the observed test
    population with label l (:func:`one_step_predictions`). Non-finite predictions give NaN for that entry.

    Args:
        predict: ``predict(key, x_source [n, d], t_target) -> [n, d]``, one step of the learned dynamics.
        x_test: test particles, shape ``[n_total, d]``.
        t_test: their snapshot labels, shape ``[n_total]``.
        key: typed PRNG key; step i uses ``jax.random.fold_in(key, l_i)``.
    """
    _, observed, predicted = one_step_predictions(predict, x_test, t_test, key)
    return np.array([wasserstein1(y, x) for y, x in zip(predicted, observed[1:])])


def cumulative_w1(predict: Predictor, x_test: np.ndarray, t_test: np.ndarray, key: Array) -> np.ndarray:
    """Returns the W1 of a rollout from the first snapshot against each later one, shape ``[T]``.

    The prediction is fed back: Y_0 = X_{l_0}, Y_{i+1} = predict(fold_in(key, l_i), Y_i, l_{i+1}),
    and entry i is W1(Y_{i+1}, X_{l_{i+1}}). Once a prediction is non-finite, it is not fed to
    ``predict`` again and every later entry is NaN.

    Args:
        predict: as in :func:`one_step_w1`.
        x_test: test particles, shape ``[n_total, d]``.
        t_test: their snapshot labels, shape ``[n_total]``.
        key: typed PRNG key; step i uses ``jax.random.fold_in(key, l_i)``.
    """
    labels, populations = _populations(x_test, t_test)
    current = populations[0]
    errors = []
    for i, (source, target) in enumerate(zip(labels[:-1], labels[1:])):
        if np.isfinite(current).all():
            current = np.asarray(predict(jax.random.fold_in(key, int(source)), current, int(target)))
        errors.append(wasserstein1(current, populations[i + 1]))
    return np.array(errors)


def _populations(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or t.shape != (len(x),):
        raise ValueError(f"expected x_test of shape [n, d] and t_test of shape [n], got {x.shape} and {t.shape}")
    labels = np.unique(t)
    if labels.size < 2:
        raise ValueError(f"need at least two snapshot labels in t_test, got {labels.tolist()}")
    return labels, [x[t == label] for label in labels]


def gradient_recovery(learned: np.ndarray, true: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """Returns how well a learnt gradient field ``scale * learned`` matches the true one, both ``[n, d]``.

    - ``nmae``: normalised mean absolute error ``mean_i |scale g_i - g*_i| / mean_i |g*_i|`` (Euclidean norms
      per point; 0 is perfect, 1 is as bad as predicting no drift);
    - ``cosine``: mean cosine similarity of ``g_i`` and ``g*_i`` over the points where both are non-zero
      (1 is perfect; invariant to ``scale``);
    - ``corr``: Pearson correlation of all components; ``rel_error``: ``|scale g - g*|_2 / |g*|_2``.

    Undefined entries are NaN: a zero true field (flat potential) has no nmae, rel_error or cosine, a
    constant one no correlation; non-finite learnt gradients make every entry NaN.
    """
    learned = np.asarray(learned, np.float64).reshape(len(true), -1)
    true = np.asarray(true, np.float64).reshape(len(true), -1)
    nan = float("nan")
    if not np.all(np.isfinite(learned)):
        return {"nmae": nan, "cosine": nan, "corr": nan, "rel_error": nan}
    scaled = scale * learned
    true_norm, learned_norm = np.linalg.norm(true, axis=1), np.linalg.norm(learned, axis=1)
    mean_true = float(np.mean(true_norm))
    tiny = 1e-12 * max(1.0, float(np.max(true_norm, initial=0.0)))
    both = (true_norm > tiny) & (learned_norm > 1e-30)
    cosine = (float(np.mean(np.sum(learned[both] * true[both], axis=1) / (learned_norm[both] * true_norm[both])))
              if both.any() else nan)
    flat_true, flat_learned = true.ravel(), scaled.ravel()
    corr = (float(np.corrcoef(flat_learned, flat_true)[0, 1])
            if np.std(flat_true) > 1e-12 and np.std(flat_learned) > 1e-12 else nan)
    norm = float(np.linalg.norm(flat_true))
    return {
        "nmae": float(np.mean(np.linalg.norm(scaled - true, axis=1)) / mean_true) if mean_true > tiny else nan,
        "cosine": cosine,
        "corr": corr,
        "rel_error": float(np.linalg.norm(flat_learned - flat_true) / norm) if norm > 1e-12 else nan,
    }

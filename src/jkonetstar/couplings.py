"""Optimal-transport couplings between consecutive population snapshots (paper App. C.2).

A coupling row pairs a particle ``source`` of snapshot t with a particle ``target`` of snapshot
t + 1 and carries the transported mass ``weight``. The plans use uniform marginals and the squared
Euclidean cost c(x, y) = ||x - y||^2 (so the plan is the W2 plan; its cost is not W2 itself).
"""

from __future__ import annotations

import time as _time
import warnings
from typing import NamedTuple

import jax
import numpy as np

__all__ = [
    "Couplings",
    "SparsifyWarning",
    "exact_transport",
    "exact_plan",
    "sinkhorn_plan",
    "sparsify",
    "couple",
    "check_pairing",
    "METHODS",
    "PAIRINGS",
]

METHODS = ("exact", "sinkhorn")
PAIRINGS = ("paired", "shuffled", "independent")
"""How the rows of consecutive snapshots relate: ``paired`` (the same particles, in the same order),
``shuffled`` (paired data with the order lost), ``independent`` (no particle in two snapshots)."""

_EMD_MAX_ITERATIONS = 1_000_000
_POT_OPTIMAL = 1


class Couplings(NamedTuple):
    """Sparse couplings between consecutive snapshots, one row per kept plan entry.

    Fields map one to one onto .npz keys (``save_npz(path, **couplings._asdict())``).

    Attributes:
        source: particles x_t, shape ``[m, d]``.
        target: particles x_{t+1}, shape ``[m, d]``.
        time: snapshot label of the *target* (t + 1), shape ``[m]``, int32.
        weight: transported mass; the rows of one snapshot pair sum to 1. Shape ``[m]``.
    """

    source: np.ndarray
    target: np.ndarray
    time: np.ndarray
    weight: np.ndarray


def exact_transport(x0: np.ndarray, x1: np.ndarray, *, metric: str = "sqeuclidean") -> tuple[np.ndarray, float]:
    """Returns ``(plan, cost)`` of exact OT between the uniform clouds ``x0`` and ``x1`` (POT ``ot.emd``).

    The one call into POT's network simplex (1e6 iterations at most): min_P sum_ij P_ij c(x0_i, x1_j) over
    P >= 0 with row sums 1/n0 and column sums 1/n1, for the cost ``metric`` of ``ot.dist``
    (``"sqeuclidean"``: the coupling plans; ``"euclidean"``: W1, :func:`jkonetstar.metrics.wasserstein1`).
    ``cost`` is the simplex's own optimal value (what ``ot.emd2`` returns). POT is imported here, on first
    use only (it imports scikit-learn, ~1 s; train and evaluate jobs rarely need it).

    Args:
        x0: source points, float64 ``[n0, d]``.
        x1: target points, float64 ``[n1, d]``.

    Returns:
        The plan, float64 ``[n0, n1]``, summing to 1, and its cost.

    Raises:
        RuntimeError: if the simplex stops before optimality or reports infeasibility.
    """
    import ot

    cost_matrix = ot.dist(x0, x1, metric=metric)
    plan, log = ot.emd(ot.unif(len(x0)), ot.unif(len(x1)), cost_matrix, numItermax=_EMD_MAX_ITERATIONS, log=True)
    if log["result_code"] != _POT_OPTIMAL:
        raise RuntimeError(
            f"exact OT between {len(x0)} and {len(x1)} points did not reach optimality "
            f"(POT result_code={log['result_code']}: {log['warning']}; numItermax={_EMD_MAX_ITERATIONS})"
        )
    return np.asarray(plan), float(log["cost"])


def exact_plan(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Returns the exact OT plan between two uniform point clouds (network simplex, POT ``ot.emd``).

    Solves min_P sum_ij P_ij ||x0_i - x1_j||^2 over P >= 0 with row sums 1/n0 and column sums 1/n1.

    Args:
        x0: source points, shape ``[n0, d]``.
        x1: target points, shape ``[n1, d]``.

    Returns:
        The plan, float64 ``[n0, n1]``, summing to 1. For n0 == n1 it is a permutation matrix / n0.

    Raises:
        RuntimeError: if the simplex stops before optimality (1e6 iterations) or reports infeasibility.
    """
    x0, x1 = _as_cloud_pair(x0, x1)
    return exact_transport(x0, x1, metric="sqeuclidean")[0]


def sinkhorn_plan(
    x0: np.ndarray,
    x1: np.ndarray,
    epsilon: float,
    *,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
) -> tuple[np.ndarray, bool]:
    """Returns the entropic OT plan (ott-jax Sinkhorn) and whether Sinkhorn converged.

    Solves min_P <P, C> - epsilon H(P) with C_ij = ||x0_i - x1_j||^2 (unscaled) and uniform marginals.

    Args:
        x0: source points, shape ``[n0, d]``.
        x1: target points, shape ``[n1, d]``.
        epsilon: entropic regularisation, in units of the squared-distance cost; > 0.
        threshold: stop when the L1 error of the marginals falls below it (ott default).
        max_iterations: iteration cap (ott default); reaching it means ``converged`` is False.

    Returns:
        ``(plan, converged)``: the plan as float64 ``[n0, n1]`` and a bool. An unconverged plan is
        returned as is so the caller can record the status; it is not hidden.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0 for the Sinkhorn plan, got {epsilon!r}")
    x0, x1 = _as_cloud_pair(x0, x1)
    plan, converged = _solve_sinkhorn(
        jax.numpy.asarray(x0, jax.numpy.float32),
        jax.numpy.asarray(x1, jax.numpy.float32),
        float(epsilon),
        threshold=float(threshold),
        max_iterations=int(max_iterations),
    )
    return np.asarray(plan, dtype=np.float64), bool(converged)


@jax.jit(static_argnames=("threshold", "max_iterations"))
def _solve_sinkhorn(x0, x1, epsilon, *, threshold, max_iterations):
    # ott-jax imports in ~2 s: only entropic couplings pay for it.
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    geometry = pointcloud.PointCloud(x0, x1, epsilon=epsilon)
    solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
    out = solver(linear_problem.LinearProblem(geometry))
    return out.matrix, out.converged


def sparsify(plan: np.ndarray, x0: np.ndarray, x1: np.ndarray, label: int, *, relax: bool = False) -> Couplings:
    """Returns the plan entries with weight > 1 / (10 max(n0, n1)) as coupling rows.

    The threshold assumes a plan of total mass 1 (uniform marginals: an entry of a permutation plan
    is 1 / n). Kept weights are the raw plan entries; :func:`couple` rescales them. A diffuse plan
    (Sinkhorn with a large epsilon) may have no entry above it: by default that is an error; with
    ``relax=True`` the threshold is halved until some entry passes, as the paper's code does, and a
    :class:`SparsifyWarning` says how far it went.

    Args:
        plan: transport plan, shape ``[n0, n1]``.
        x0: source points, shape ``[n0, d]``.
        x1: target points, shape ``[n1, d]``.
        label: snapshot label of the targets ``x1``, stored in ``time``.
        relax: halve the threshold until an entry passes instead of raising.

    Raises:
        ValueError: if no entry passes the threshold and ``relax`` is False, or the plan has no
            positive entry.
    """
    plan = np.asarray(plan)
    n0, n1 = plan.shape
    if len(x0) != n0 or len(x1) != n1:
        raise ValueError(f"plan of shape {plan.shape} does not match {len(x0)} sources and {len(x1)} targets")
    threshold = start = 1.0 / (10 * max(n0, n1))
    largest = float(plan.max()) if plan.size else 0.0
    if largest <= threshold:
        if not relax or not largest > 0:
            raise ValueError(
                f"no plan entry into snapshot {label} exceeds the sparsification threshold "
                f"1/(10*max({n0}, {n1})) = {threshold:.3g} (largest entry {largest:.3g}); "
                "the plan is too diffuse: use the exact plan or a smaller epsilon"
                + ("" if relax else ", or let the threshold relax (couplings.sparsify_relax: true)")
            )
        halvings = 0
        while not largest > threshold:
            halvings += 1
            threshold = start / 2**halvings
        rows, cols = np.nonzero(plan > threshold)
        warnings.warn(
            f"plan into snapshot {label} is diffuse: sparsification threshold halved {halvings} times, "
            f"{start:.3g} -> {threshold:.3g}, keeping {rows.size} of {plan.size} entries",
            SparsifyWarning,
            stacklevel=2,
        )
    else:
        rows, cols = np.nonzero(plan > threshold)
    return Couplings(
        source=np.asarray(x0)[rows],
        target=np.asarray(x1)[cols],
        time=np.full(rows.size, label, dtype=np.int32),
        weight=plan[rows, cols],
    )


class SparsifyWarning(UserWarning):
    """A plan had nothing above the sparsification threshold, which was relaxed (``relax=True``)."""


def couple(
    x: np.ndarray,
    t: np.ndarray,
    *,
    method: str = "exact",
    epsilon: float | None = None,
    block_size: int | None = 1000,
    pairing: str = "paired",
    rng: np.random.Generator | None = None,
    sinkhorn_threshold: float = 1e-3,
    sinkhorn_max_iterations: int = 2000,
    sparsify_relax: bool = False,
) -> tuple[Couplings, list[float]]:
    """Returns sparse OT couplings between every pair of consecutive snapshots, and the time per pair.

    For snapshot labels l_0 < l_1 < ... present in ``t``, couples l_i with l_{i+1}. When both
    snapshots hold n particles, their rows (in order of appearance in ``x``) are cut into index blocks
    of ``block_size`` and block k of l_i is coupled with block k of l_{i+1} (the last block may be
    smaller). Each block's plan is sparsified (:func:`sparsify`) and its kept weights w_ij are
    rescaled to w_ij * (n_k / n) / sum(kept w), so the rows of one snapshot pair sum to 1 and
    each block counts by its share n_k / n of the particles. Snapshots of different sizes get one
    plan per pair, without blocking.

    ``pairing`` says what the row order means. ``"paired"``: row i of every snapshot is the same
    particle, so the trajectory identity survives in the blocks (block k holds the same particles at
    t and t + 1), as in the paper's code. ``"shuffled"``: paired data whose order is lost; each
    snapshot is shuffled first. ``"independent"``: no particle is in two snapshots (e.g.
    :func:`jkonetstar.simulate.simulate_independent`, single-cell data); each snapshot is shuffled
    too, so that an index block is a random sample of its snapshot whatever order the rows came in.
    Without blocking (or with one block) the pairings give the same plans: exact OT does not depend
    on the row order.

    Args:
        x: particles of all snapshots, shape ``[n_total, d]``.
        t: snapshot label of each particle, shape ``[n_total]``.
        method: ``"exact"`` (:func:`exact_plan`) or ``"sinkhorn"`` (:func:`sinkhorn_plan`).
        epsilon: Sinkhorn regularisation; required for ``"sinkhorn"``, must be None for ``"exact"``.
        block_size: particles per block for balanced pairs; None couples whole snapshots.
        pairing: one of :data:`PAIRINGS`.
        rng: NumPy generator of the shuffles; required unless ``pairing="paired"``.
        sinkhorn_threshold: Sinkhorn marginal-error tolerance.
        sinkhorn_max_iterations: Sinkhorn iteration cap.
        sparsify_relax: halve the sparsification threshold of a plan with nothing above it (``relax``
            of :func:`sparsify`, with a warning) instead of raising.

    Returns:
        ``(couplings, seconds)``: the concatenated :class:`Couplings` and, per snapshot pair, the
        wall-clock seconds spent computing and sparsifying its plans. For Sinkhorn the first pair (or
        the first new block shape) includes jit compilation.

    Raises:
        ValueError: bad settings, fewer than two snapshots, or a plan with nothing above the sparsity
            threshold (unless ``sparsify_relax``).
        RuntimeError: the exact solver fails, or Sinkhorn does not converge for some block (the message
            names the pair and epsilon; raise ``sinkhorn_max_iterations`` or ``epsilon``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown coupling method {method!r}: choose one of {list(METHODS)}")
    check_pairing(pairing)
    if method == "sinkhorn" and (epsilon is None or not epsilon > 0):
        raise ValueError(f"method='sinkhorn' needs epsilon > 0, got epsilon={epsilon!r}")
    if method == "exact" and epsilon is not None:
        raise ValueError(f"method='exact' takes no epsilon, got epsilon={epsilon!r}; use method='sinkhorn'")
    is_count = isinstance(block_size, (int, np.integer)) and not isinstance(block_size, bool)
    if block_size is not None and not (is_count and block_size >= 1):
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
    if pairing != "paired" and rng is None:
        raise ValueError(f"pairing={pairing!r} needs rng (a np.random.Generator) to shuffle the snapshots")
    x = np.asarray(x)
    t = np.asarray(t)
    if x.ndim != 2 or t.shape != (len(x),):
        raise ValueError(f"expected x of shape [n, d] and t of shape [n], got {x.shape} and {t.shape}")
    labels = np.unique(t)
    if labels.size < 2:
        raise ValueError(f"need at least two snapshot labels in t to couple, got {labels.tolist()}")

    snapshots = [x[t == label] for label in labels]
    if pairing != "paired":
        snapshots = [snapshot[rng.permutation(len(snapshot))] for snapshot in snapshots]

    pieces, seconds = [], []
    for x0, x1, label in zip(snapshots[:-1], snapshots[1:], labels[1:]):
        start = _time.perf_counter()
        pieces.extend(_couple_pair(x0, x1, int(label), method, epsilon, block_size,
                                   sinkhorn_threshold, sinkhorn_max_iterations, sparsify_relax))
        seconds.append(_time.perf_counter() - start)
    return Couplings(*(np.concatenate(field) for field in zip(*pieces))), seconds


def check_pairing(pairing: str) -> None:
    """Raises ValueError for a name not in :data:`PAIRINGS` (the former ``"unpaired"`` says its new name)."""
    if pairing == "unpaired":
        raise ValueError("pairing 'unpaired' is now called 'shuffled' (paired data with the order lost): use "
                         "'shuffled', or 'independent' for snapshots that share no particle")
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}: choose one of {list(PAIRINGS)}")


def _couple_pair(x0, x1, label, method, epsilon, block_size, sinkhorn_threshold, sinkhorn_max_iterations, relax):
    n0, n1 = len(x0), len(x1)
    if n0 == n1 and block_size is not None:
        starts = range(0, n0, int(block_size))
        blocks = [(x0[s : s + block_size], x1[s : s + block_size]) for s in starts]
    else:
        blocks = [(x0, x1)]
    n_total = max(n0, n1)
    pieces = []
    for b0, b1 in blocks:
        if method == "exact":
            plan = exact_plan(b0, b1)
        else:
            plan, converged = sinkhorn_plan(
                b0, b1, epsilon, threshold=sinkhorn_threshold, max_iterations=sinkhorn_max_iterations
            )
            if not converged:
                raise RuntimeError(
                    f"Sinkhorn did not converge into snapshot {label} (epsilon={epsilon}, "
                    f"threshold={sinkhorn_threshold}, max_iterations={sinkhorn_max_iterations}); "
                    "raise sinkhorn_max_iterations or epsilon"
                )
        kept = sparsify(plan, b0, b1, label, relax=relax)
        share = max(len(b0), len(b1)) / n_total
        weight = kept.weight * (share / kept.weight.sum())
        pieces.append(kept._replace(weight=weight.astype(np.float32)))
    return pieces


def _as_cloud_pair(x0, x1) -> tuple[np.ndarray, np.ndarray]:
    x0 = np.asarray(x0, dtype=np.float64)
    x1 = np.asarray(x1, dtype=np.float64)
    if x0.ndim != 2 or x1.ndim != 2 or x0.shape[1] != x1.shape[1]:
        raise ValueError(f"expected point clouds [n0, d] and [n1, d], got shapes {x0.shape} and {x1.shape}")
    if len(x0) == 0 or len(x1) == 0:
        raise ValueError(f"cannot couple an empty point cloud (sizes {len(x0)} and {len(x1)})")
    return x0, x1

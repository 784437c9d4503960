"""Gaussian-mixture densities per snapshot and their JAX evaluation (paper App. C.3).

The internal-energy term of the JKOnet* loss needs rho(y) and grad rho(y) at every coupling target
y = x_{t+1}; rho is a Gaussian mixture fitted to snapshot t + 1 with scikit-learn.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

if TYPE_CHECKING:
    from jkonetstar.couplings import Couplings

__all__ = [
    "GaussianMixture",
    "MixtureSizeWarning",
    "fit_gaussian_mixture",
    "fit_per_snapshot",
    "components_for_size",
    "density",
    "log_density",
    "density_and_grad",
    "log_density_gradient_at_targets",
    "to_arrays",
    "from_arrays",
    "mixtures_to_arrays",
    "mixtures_from_arrays",
]


@jax.tree_util.register_dataclass  # a pytree (plain JAX: Flax's struct costs every job 0.3 s of imports)
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A fitted Gaussian mixture rho(x) = sum_k w_k N(x; mu_k, Sigma_k), as a frozen pytree.

    Attributes:
        weights: mixture weights w_k, summing to 1, shape ``[k]``.
        means: component means mu_k, shape ``[k, d]``.
        covariances: full covariances Sigma_k (symmetric positive definite), shape ``[k, d, d]``.
    """

    weights: Array
    means: Array
    covariances: Array

    def replace(self, **changes) -> "GaussianMixture":
        """A copy with ``changes`` (as Flax structs have)."""
        return dataclasses.replace(self, **changes)


def fit_gaussian_mixture(
    x: np.ndarray, *, n_components: int = 10, seed: int, min_det: float = 0.0
) -> GaussianMixture:
    """Returns a full-covariance Gaussian mixture fitted to ``x`` by EM (scikit-learn).

    Components with det(Sigma_k) <= ``min_det`` are dropped and the remaining weights renormalised.
    The paper's code uses the absolute threshold 1e-4, which depends on the data's scale (it removed
    every component on SnapMMD's data, paper.md §4.3); the default 0 keeps every component.

    Args:
        x: samples of one snapshot, shape ``[n, d]``.
        n_components: number of mixture components, 1 <= n_components <= n.
        seed: ``random_state`` of scikit-learn's initialisation.
        min_det: covariance-determinant filter, >= 0.

    Raises:
        ValueError: for a bad ``n_components`` or ``min_det``, or when ``min_det`` would drop every
            component.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected samples of shape [n, d] with n >= 1, got shape {x.shape}")
    if isinstance(n_components, bool) or int(n_components) != n_components or not 1 <= n_components <= len(x):
        raise ValueError(
            f"n_components must be an integer between 1 and the number of points ({len(x)}), got {n_components!r}"
        )
    if not min_det >= 0:
        raise ValueError(f"min_det must be >= 0, got {min_det!r}")
    # One thread: a snapshot is small, and OpenMP/BLAS threads busy-waiting on a loaded machine (parallel
    # workflow jobs) slowed a 1000-point fit from 0.1 s to several seconds.
    from sklearn import mixture  # ~1 s to import: only the couplings stage fits mixtures
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        fitted = mixture.GaussianMixture(
            n_components=int(n_components), covariance_type="full", random_state=seed
        ).fit(x)
    determinants = np.linalg.det(fitted.covariances_)
    keep = determinants > min_det
    if not keep.any():
        raise ValueError(
            f"min_det={min_det} drops every Gaussian-mixture component (largest covariance determinant "
            f"{determinants.max():.3g}); lower min_det (0 keeps all components)"
        )
    weights = fitted.weights_[keep]
    return GaussianMixture(
        weights=jnp.asarray(weights / weights.sum(), jnp.float32),
        means=jnp.asarray(fitted.means_[keep], jnp.float32),
        covariances=jnp.asarray(fitted.covariances_[keep], jnp.float32),
    )


class MixtureSizeWarning(UserWarning):
    """A snapshot too small for ``density.n_components`` got a mixture with fewer components."""


def components_for_size(n_points: int, dim: int, n_components: int) -> int:
    """Returns min(n_components, max(1, n_points // (dim + 1))): the components a snapshot can support.

    A full covariance in d dimensions is singular on fewer than d + 1 points, so each component is given
    at least d + 1 points on average; a snapshot always gets at least one component.
    """
    return min(int(n_components), max(1, int(n_points) // (int(dim) + 1)))


def fit_per_snapshot(
    x: np.ndarray, t: np.ndarray, *, n_components: int = 10, seed: int, min_det: float = 0.0
) -> dict[int, GaussianMixture]:
    """Returns one mixture per snapshot label, fitted as in :func:`fit_gaussian_mixture`.

    A snapshot of n_k points in d dimensions gets :func:`components_for_size` (n_k, d, n_components)
    components, at most max(1, n_k // (d + 1)); each snapshot that is capped so issues one
    :class:`MixtureSizeWarning` naming its label, its size and the setting ``density.n_components``.
    Where every snapshot has at least ``n_components * (d + 1)`` points, nothing is capped.

    Args:
        x: particles, shape ``[n_total, d]``.
        t: snapshot label of each particle, shape ``[n_total]``.
        n_components: components per snapshot (the config's ``density.n_components``), >= 1.
    """
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or t.shape != (len(x),):
        raise ValueError(f"expected x of shape [n, d] and t of shape [n] matching it, got {x.shape} and {t.shape}")
    if isinstance(n_components, bool) or int(n_components) != n_components or n_components < 1:
        raise ValueError(f"density.n_components must be an integer >= 1, got {n_components!r}")
    mixtures = {}
    for label in np.unique(t):
        points = x[t == label]
        fitted_components = components_for_size(len(points), x.shape[1], n_components)
        if fitted_components < n_components:
            warnings.warn(
                f"snapshot {int(label)} has {len(points)} points in d = {x.shape[1]}: fitting {fitted_components} "
                f"Gaussian-mixture component(s) instead of density.n_components = {int(n_components)} "
                f"(at most max(1, n // (d + 1)) for full covariances)",
                MixtureSizeWarning,
                stacklevel=2,
            )
        mixtures[int(label)] = fit_gaussian_mixture(points, n_components=fitted_components, seed=seed, min_det=min_det)
    return mixtures


def log_density(gmm: GaussianMixture, x: Array) -> Array:
    """Returns log rho(x) = logsumexp_k [log w_k + log N(x; mu_k, Sigma_k)], shape ``[n]``.

    With Sigma_k = L_k L_k^T (Cholesky), log N = -|L_k^{-1}(x - mu_k)|^2 / 2 - sum log diag L_k - d/2 log 2 pi.

    Args:
        gmm: the mixture.
        x: evaluation points, shape ``[n, d]``.
    """
    return _log_components(gmm, x)[0]


def density(gmm: GaussianMixture, x: Array) -> Array:
    """Returns rho(x) = sum_k w_k N(x; mu_k, Sigma_k) at each row of ``x`` (``[n, d]``), shape ``[n]``."""
    return jnp.exp(log_density(gmm, x))


def density_and_grad(gmm: GaussianMixture, x: Array) -> tuple[Array, Array]:
    """Returns rho(x), shape ``[n]``, and grad rho(x), shape ``[n, d]``, in closed form.

    grad rho(x) = rho(x) sum_k r_k(x) Sigma_k^{-1} (mu_k - x), with r_k the responsibilities
    w_k N_k(x) / rho(x) (a softmax of the component log terms, hence stable far from the data).

    Args:
        gmm: the mixture.
        x: evaluation points, shape ``[n, d]``.
    """
    log_rho, log_terms, scaled, cholesky = _log_components(gmm, x)
    responsibilities = jax.nn.softmax(log_terms, axis=-1)  # [n, k]
    # Sigma^{-1}(x - mu) = L^{-T} (L^{-1}(x - mu)); ``scaled`` holds L^{-1}(x - mu), [k, n, d].
    precision_times_offset = jax.vmap(
        lambda lower, z: jax.scipy.linalg.solve_triangular(lower, z.T, lower=True, trans="T").T
    )(cholesky, scaled)
    grad_log_rho = -jnp.einsum("nk,knd->nd", responsibilities, precision_times_offset)
    rho = jnp.exp(log_rho)
    return rho, rho[:, None] * grad_log_rho


def _log_components(gmm: GaussianMixture, x: Array):
    x = jnp.asarray(x)
    dim = gmm.means.shape[-1]
    cholesky = jnp.linalg.cholesky(gmm.covariances)  # [k, d, d]
    offsets = x[None, :, :] - gmm.means[:, None, :]  # [k, n, d]
    scaled = jax.vmap(lambda lower, z: jax.scipy.linalg.solve_triangular(lower, z.T, lower=True).T)(
        cholesky, offsets
    )
    log_det_half = jnp.sum(jnp.log(jnp.diagonal(cholesky, axis1=-2, axis2=-1)), axis=-1)  # [k]
    log_normal = -0.5 * jnp.sum(scaled**2, axis=-1) - log_det_half[:, None] - 0.5 * dim * jnp.log(2 * jnp.pi)
    log_terms = (jnp.log(gmm.weights)[:, None] + log_normal).T  # [n, k]
    return jax.nn.logsumexp(log_terms, axis=-1), log_terms, scaled, cholesky


def log_density_gradient_at_targets(
    gmms: Mapping[int, GaussianMixture], couplings: Couplings, floor: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """Returns max(rho(y), floor) and grad rho(y) at every coupling target y.

    Each target is evaluated with the mixture of its own snapshot, ``gmms[couplings.time[i]]``
    (the label of the target). Only rho is clipped, so the loss's grad rho / rho stays finite;
    grad rho is the unclipped gradient.

    Args:
        gmms: mixture per snapshot label.
        couplings: rows whose ``target`` ``[m, d]`` and ``time`` ``[m]`` are used.
        floor: lower clip of rho, > 0 (paper: 1e-5).

    Returns:
        ``(rho, grad_rho)`` as float32 NumPy arrays of shapes ``[m]`` and ``[m, d]``.

    Raises:
        ValueError: if a target label has no mixture, or ``floor`` is not positive.
    """
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor!r}")
    time = np.asarray(couplings.time)
    target = np.asarray(couplings.target, dtype=np.float32)
    missing = sorted(set(np.unique(time).tolist()) - set(gmms))
    if missing:
        raise ValueError(f"no Gaussian mixture for target snapshot label(s) {missing}; have {sorted(gmms)}")
    rho = np.empty(len(time), np.float32)
    grad_rho = np.empty(target.shape, np.float32)
    for label in np.unique(time):
        rows = time == label
        rho_rows, grad_rows = _density_and_grad_jit(gmms[int(label)], target[rows])
        rho[rows], grad_rho[rows] = np.asarray(rho_rows), np.asarray(grad_rows)
    return np.maximum(rho, np.float32(floor)), grad_rho


_density_and_grad_jit = jax.jit(density_and_grad)


def to_arrays(gmm: GaussianMixture, prefix: str = "") -> dict[str, np.ndarray]:
    """Returns the mixture as NumPy arrays keyed ``{prefix}weights``, ``{prefix}means``, ``{prefix}covariances``."""
    return {f"{prefix}{name}": np.asarray(getattr(gmm, name)) for name in ("weights", "means", "covariances")}


def from_arrays(arrays: Mapping[str, np.ndarray], prefix: str = "") -> GaussianMixture:
    """Returns the mixture stored by :func:`to_arrays` under ``prefix``.

    Raises:
        ValueError: naming a missing key or inconsistent shapes.
    """
    fields = {}
    for name in ("weights", "means", "covariances"):
        key = f"{prefix}{name}"
        if key not in arrays:
            raise ValueError(f"missing Gaussian-mixture array {key!r} (found {sorted(arrays)})")
        fields[name] = jnp.asarray(arrays[key], jnp.float32)
    weights, means, covariances = fields["weights"], fields["means"], fields["covariances"]
    if means.ndim != 2 or weights.shape != means.shape[:1] or covariances.shape != means.shape + means.shape[1:]:
        raise ValueError(
            f"inconsistent Gaussian-mixture shapes under prefix {prefix!r}: weights {fields['weights'].shape}, "
            f"means {fields['means'].shape}, covariances {fields['covariances'].shape}"
        )
    return GaussianMixture(**fields)


_LABEL_KEY = re.compile(r"^t(-?\d+)_weights$")


def mixtures_to_arrays(gmms: Mapping[int, GaussianMixture]) -> dict[str, np.ndarray]:
    """Returns all snapshots' mixtures as one flat dict for .npz, with keys ``t{label}_{field}``."""
    arrays = {}
    for label, gmm in gmms.items():
        arrays.update(to_arrays(gmm, prefix=f"t{int(label)}_"))
    return arrays


def mixtures_from_arrays(arrays: Mapping[str, np.ndarray]) -> dict[int, GaussianMixture]:
    """Inverse of :func:`mixtures_to_arrays`; raises ValueError if no mixture is found."""
    labels = sorted(int(m.group(1)) for m in map(_LABEL_KEY.match, arrays) if m)
    if not labels:
        raise ValueError(f"no Gaussian-mixture arrays 't<label>_weights' found (keys {sorted(arrays)})")
    return {label: from_arrays(arrays, prefix=f"t{label}_") for label in labels}

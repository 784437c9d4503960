"""Polynomial and radial-basis features, and their gradients, for the linear JKOnet* family.

The feature map (paper App. C.6) stacks all monomials ``prod_k v_k^{e_k}`` with ``e in {0..degree}^d``
minus the constant, and Gaussian bumps ``exp(-|v - c|^2 / width)`` centred on a regular grid of
``rbf_per_dim^d`` points in ``[low, high]^d``. In 2-D with the defaults that is 24 + 100 = 124 features.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FeatureMap", "feature_map", "features", "feature_gradients", "mean_feature_gradients", "MAX_FEATURES"]

from jkonetstar.methods import MAX_FEATURES, feature_count  # noqa: E402  (the registry owns the limit and count)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["exponents", "centres", "width", "axis"],
                   meta_fields=["degree"])  # a pytree in plain JAX (Flax's struct: 0.3 s of imports per job)
@dataclasses.dataclass(frozen=True)
class FeatureMap:
    """Exponents ``[n_poly, d]`` of the monomials, RBF centres ``[n_rbf, d]``, RBF width, largest exponent.

    ``axis`` holds the 1-D grid whose d-fold product (in ``itertools.product`` order) gives the centres.
    """

    exponents: jax.Array
    centres: jax.Array
    width: float
    degree: int
    axis: jax.Array | None = None

    def replace(self, **changes) -> "FeatureMap":
        """A copy with ``changes`` (as Flax structs have)."""
        return dataclasses.replace(self, **changes)

    @property
    def size(self) -> int:
        return self.exponents.shape[0] + self.centres.shape[0]


def feature_map(
    dim: int, *, degree: int = 4, rbf_per_dim: int = 10, width: float = 0.5, low: float = -4.0, high: float = 4.0
) -> FeatureMap:
    """Returns the paper's feature map in dimension ``dim``.

    Raises:
        ValueError: if the map would have more than :data:`MAX_FEATURES` features ((degree+1)^d + rbf_per_dim^d
            grows exponentially with d: the linear solvers only suit low dimensions).
    """
    size = feature_count(dim, degree, rbf_per_dim)
    if size > MAX_FEATURES:
        raise ValueError(
            f"linear features in dim={dim} need {size} features (more than {MAX_FEATURES}); "
            "use an MLP solver such as jkonet-star-potential in this dimension"
        )
    exponents = np.array([e for e in itertools.product(range(degree + 1), repeat=dim) if any(e)], dtype=np.int32)
    axis = np.linspace(low, high, rbf_per_dim, dtype=np.float32)
    centres = np.array(list(itertools.product(axis, repeat=dim)), dtype=np.float32).reshape(-1, dim)
    return FeatureMap(exponents, centres, float(width), degree, axis)


def _powers(v: jnp.ndarray, max_degree: int) -> jnp.ndarray:
    return jnp.stack([v**e for e in range(max_degree + 1)], axis=-1)


def features(fmap: FeatureMap, v: jnp.ndarray) -> jnp.ndarray:
    """Returns the features ``[n, n_features]`` of points ``v`` of shape ``[n, d]``."""
    dim = v.shape[-1]
    powers = _powers(v, fmap.degree)  # [n, d, degree + 1]
    dims = jnp.arange(dim)
    poly = jnp.prod(powers[:, dims, fmap.exponents], axis=-1)  # [n, n_poly]
    sq = jnp.sum((v[:, None, :] - fmap.centres[None]) ** 2, axis=-1)
    return jnp.concatenate([poly, jnp.exp(-sq / fmap.width)], axis=-1)


def feature_gradients(fmap: FeatureMap, v: jnp.ndarray) -> jnp.ndarray:
    """Returns the gradients ``[n, d, n_features]`` of the features at points ``v`` ``[n, d]`` (closed form)."""
    dim = v.shape[-1]
    max_degree = fmap.degree
    powers = _powers(v, max_degree)  # v^e
    dpowers = jnp.concatenate([jnp.zeros_like(powers[..., :1]), jnp.arange(1, max_degree + 1) * powers[..., :-1]], -1)
    dims = jnp.arange(dim)
    factors = powers[:, dims, fmap.exponents]  # [n, n_poly, d]
    dfactors = dpowers[:, dims, fmap.exponents]
    poly_grads = []
    for k in range(dim):
        others = jnp.prod(jnp.where(dims == k, 1.0, factors), axis=-1)
        poly_grads.append(dfactors[..., k] * others)
    poly_grad = jnp.stack(poly_grads, axis=1)  # [n, d, n_poly]
    diff = v[:, None, :] - fmap.centres[None]  # [n, n_rbf, d]
    bump = jnp.exp(-jnp.sum(diff**2, axis=-1) / fmap.width)
    rbf_grad = jnp.swapaxes(-2.0 / fmap.width * diff * bump[..., None], 1, 2)
    return jnp.concatenate([poly_grad, rbf_grad], axis=-1)


def mean_feature_gradients(fmap: FeatureMap, points: jnp.ndarray, population: jnp.ndarray, weights=None):
    """Returns ``sum_j w_j grad phi(points_i - population_j) / sum_j w_j``, shape ``[n, d, n_features]``.

    The gradient is taken in the argument ``z = x_i - x_j`` of phi (that of an interaction energy
    ``W(z) = theta . phi(z)``). The n * k pairs are never expanded into features: both families are tensor
    products of 1-D bases (monomials ``z_k^e``, e = 0..degree, without the constant; grid bumps
    ``exp(-(z_k - a_p)^2 / w)``), so the weighted sum over ``j`` of a product of d factors is one
    contraction of d arrays of shape ``[k, r]`` per point. Requires the map built by :func:`feature_map`.

    Args:
        points: ``[n, d]``. population: ``[k, d]``. weights: ``[k]`` (uniform if None).
    """
    dim = points.shape[-1]
    if weights is None:
        weights = jnp.ones(population.shape[0], points.dtype)
    weights = weights / jnp.sum(weights)
    letters = "abcdefgh"[:dim]
    contraction = ",".join(["j"] + [f"j{c}" for c in letters]) + "->" + letters

    def tensor_means(basis, dbasis):
        grads = []
        for k in range(dim):
            factors = [dbasis[:, l] if l == k else basis[:, l] for l in range(dim)]
            grads.append(jnp.einsum(contraction, weights, *factors).reshape(-1))
        return jnp.stack(grads)  # [d, r^d]

    def one(p):
        z = p - population  # [k, d]
        powers = _powers(z, fmap.degree)
        exps = jnp.arange(1, fmap.degree + 1, dtype=z.dtype)
        dpowers = jnp.concatenate([jnp.zeros_like(powers[..., :1]), exps * powers[..., :-1]], axis=-1)
        poly = tensor_means(powers, dpowers)[:, 1:]
        off = z[:, :, None] - fmap.axis[None, None, :]  # [k, d, r]
        bump = jnp.exp(-(off**2) / fmap.width)
        rbf = tensor_means(bump, -2.0 / fmap.width * off * bump)
        return jnp.concatenate([poly, rbf], axis=-1)

    return jax.lax.map(one, points, batch_size=32)

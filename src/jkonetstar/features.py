"""Polynomial and radial-basis features, and their gradients, for the linear JKOnet* family.

The feature map (paper App. C.6) stacks all monomials ``prod_k v_k^{e_k}`` with ``e in {0..degree}^d``
minus the constant, and Gaussian bumps ``exp(-|v - c|^2 / width)`` centred on a regular grid of
``rbf_per_dim^d`` points in ``[low, high]^d``. In 2-D with the defaults that is 24 + 100 = 124 features.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["FeatureMap", "feature_map", "features", "feature_gradients", "MAX_FEATURES"]

MAX_FEATURES = 5000
"""Largest feature count the closed-form solvers accept (the normal matrix is MAX_FEATURES^2)."""


class FeatureMap(NamedTuple):
    """Exponents ``[n_poly, d]`` of the monomials, RBF centres ``[n_rbf, d]`` and the RBF width."""

    exponents: np.ndarray
    centres: np.ndarray
    width: float

    @property
    def size(self) -> int:
        return len(self.exponents) + len(self.centres)


def feature_map(
    dim: int, *, degree: int = 4, rbf_per_dim: int = 10, width: float = 0.5, low: float = -4.0, high: float = 4.0
) -> FeatureMap:
    """Returns the paper's feature map in dimension ``dim``.

    Raises:
        ValueError: if the map would have more than :data:`MAX_FEATURES` features ((degree+1)^d + rbf_per_dim^d
            grows exponentially with d: the linear solvers only suit low dimensions).
    """
    size = (degree + 1) ** dim - 1 + rbf_per_dim**dim
    if size > MAX_FEATURES:
        raise ValueError(
            f"linear features in dim={dim} need {size} features (more than {MAX_FEATURES}); "
            "use an MLP solver such as jkonet-star-potential in this dimension"
        )
    exponents = np.array([e for e in itertools.product(range(degree + 1), repeat=dim) if any(e)], dtype=np.int32)
    axis = np.linspace(low, high, rbf_per_dim) if rbf_per_dim else np.zeros(0)
    centres = np.array(list(itertools.product(axis, repeat=dim)), dtype=np.float32).reshape(-1, dim)
    return FeatureMap(exponents, centres, float(width))


def _powers(v: jnp.ndarray, max_degree: int) -> jnp.ndarray:
    return jnp.stack([v**e for e in range(max_degree + 1)], axis=-1)


def features(fmap: FeatureMap, v: jnp.ndarray) -> jnp.ndarray:
    """Returns the features ``[n, n_features]`` of points ``v`` of shape ``[n, d]``."""
    dim = v.shape[-1]
    powers = _powers(v, int(fmap.exponents.max(initial=0)))  # [n, d, degree + 1]
    dims = jnp.arange(dim)
    poly = jnp.prod(powers[:, dims, fmap.exponents], axis=-1)  # [n, n_poly]
    sq = jnp.sum((v[:, None, :] - fmap.centres[None]) ** 2, axis=-1)
    return jnp.concatenate([poly, jnp.exp(-sq / fmap.width)], axis=-1)


def feature_gradients(fmap: FeatureMap, v: jnp.ndarray) -> jnp.ndarray:
    """Returns the gradients ``[n, d, n_features]`` of the features at points ``v`` ``[n, d]`` (closed form)."""
    dim = v.shape[-1]
    max_degree = int(fmap.exponents.max(initial=0))
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

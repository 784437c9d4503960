"""Tests of jkonetstar.features: the paper's feature map, its closed-form gradients and pair means."""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jkonetstar import features as feats


def _reference_features(v, degree, axis, width):
    """NumPy: all monomials prod_k v_k^e_k, e in {0..degree}^d minus 0, then bumps on the axis grid."""
    v = np.asarray(v, np.float64)
    dim = v.shape[1]
    exponents = [e for e in itertools.product(range(degree + 1), repeat=dim) if any(e)]
    centres = np.array(list(itertools.product(axis, repeat=dim)), np.float64).reshape(-1, dim)
    poly = np.stack([np.prod(v ** np.array(e), axis=1) for e in exponents], axis=1)
    bumps = np.exp(-np.sum((v[:, None, :] - centres[None]) ** 2, axis=-1) / width)
    return np.concatenate([poly, bumps], axis=1)


def test_paper_feature_count_in_2d():
    # 5^2 - 1 = 24 monomials and 10^2 = 100 RBFs (paper.md section 3.2).
    fmap = feats.feature_map(2)
    assert fmap.exponents.shape == (24, 2) and fmap.centres.shape == (100, 2) and fmap.size == 124
    np.testing.assert_allclose(np.unique(fmap.centres), np.linspace(-4, 4, 10), rtol=1e-6)
    assert fmap.width == 0.5


def test_too_many_features_raises_naming_the_dimension():
    with pytest.raises(ValueError, match=re.escape("linear features in dim=4 need 10624 features (more than 5000)")):
        feats.feature_map(4)


def _feature_map(dim):
    """Degree 4 (2 in 3-D, to keep the test small) and 5 bumps per axis on [-4, 4]."""
    return feats.feature_map(dim, degree=4 if dim < 3 else 2, rbf_per_dim=5)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_features_match_numpy_reference(dim):
    # float32 monomials up to |v|^(4d) <= 3^8 for |v| <= 3: compare with rtol 1e-5 and an atol
    # of 1e-6 (bumps underflow towards 0 far from their centre).
    fmap = _feature_map(dim)
    v = np.random.default_rng(dim).uniform(-3, 3, size=(7, dim)).astype(np.float32)
    expected = _reference_features(v, fmap.degree, np.linspace(-4, 4, 5), 0.5)
    np.testing.assert_allclose(jax.jit(feats.features)(fmap, jnp.asarray(v)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_feature_gradients_match_autodiff(dim):
    # The closed form against jax.jacfwd of the features: same float32 maths in another order,
    # rtol 1e-5 with an atol of 1e-5 times the largest entry (cancellation in the product rule).
    fmap = _feature_map(dim)
    v = jnp.asarray(np.random.default_rng(10 + dim).uniform(-3, 3, size=(6, dim)), jnp.float32)

    @jax.jit
    def both(fmap, v):
        auto = jax.vmap(jax.jacfwd(lambda p: feats.features(fmap, p[None])[0]))(v)  # [n, features, d]
        return feats.feature_gradients(fmap, v), jnp.swapaxes(auto, 1, 2)

    closed, auto = map(np.asarray, both(fmap, v))
    assert closed.shape == (6, dim, fmap.size)
    np.testing.assert_allclose(closed, auto, rtol=1e-5, atol=1e-5 * np.max(np.abs(auto)))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mean_feature_gradients_match_brute_force(dim):
    # The separable contraction against the explicit sum_j w_j grad phi(p_i - q_j) / sum_j w_j over all
    # pairs, with uniform (None) and random weights. Differences of points in [-2, 2] reach 4, so
    # monomial gradients reach ~4^(4d - 1); float32 sums in another order: atol 1e-5 times the largest
    # entry.
    fmap = _feature_map(dim)
    rng = np.random.default_rng(20 + dim)
    points = jnp.asarray(rng.uniform(-2, 2, size=(5, dim)), jnp.float32)
    population = jnp.asarray(rng.uniform(-2, 2, size=(9, dim)), jnp.float32)
    weights = jnp.asarray(rng.uniform(0.1, 1.0, size=9), jnp.float32)

    @jax.jit
    def compute(fmap, points, population, weights):
        pairs = jax.vmap(lambda p: feats.feature_gradients(fmap, p - population))(points)  # [n, k, d, f]
        return (feats.mean_feature_gradients(fmap, points, population),
                feats.mean_feature_gradients(fmap, points, population, weights), pairs)

    uniform, weighted, pairs = map(np.asarray, compute(fmap, points, population, weights))
    pairs = pairs.astype(np.float64)
    w = np.asarray(weights, np.float64)
    for fast, brute in ((uniform, pairs.mean(axis=1)), (weighted, np.einsum("j,njdk->ndk", w, pairs) / w.sum())):
        assert fast.shape == (5, dim, fmap.size)
        np.testing.assert_allclose(fast, brute, rtol=1e-5, atol=1e-5 * np.max(np.abs(brute)))

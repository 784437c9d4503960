"""Tests for jkonetstar.density: the JAX mixture against scikit-learn, its gradient against autodiff
and finite differences, the determinant filter, npz round trips and evaluation at coupling targets."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnMixture

from jkonetstar import density
from jkonetstar.couplings import Couplings
from jkonetstar.density import (
    GaussianMixture,
    MixtureSizeWarning,
    components_for_size,
    density_and_grad,
    fit_gaussian_mixture,
    fit_per_snapshot,
    from_arrays,
    log_density,
    log_density_gradient_at_targets,
    mixtures_from_arrays,
    mixtures_to_arrays,
    to_arrays,
)
from jkonetstar.io import load_npz, save_npz

# Jitted once here so the tests do not pay for op-by-op dispatch; the library functions stay unjitted.
_density = jax.jit(density.density)
_log_density = jax.jit(log_density)
_density_and_grad = jax.jit(density_and_grad)


def _clusters(rng, n=300, tight_scale=None):
    """Three 2-D Gaussian clusters; the last has standard deviation ``tight_scale`` if given."""
    centres = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
    scales = [0.6, 0.9, 0.4 if tight_scale is None else tight_scale]
    parts = [c + s * rng.normal(size=(n // 3, 2)) for c, s in zip(centres, scales)]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    x = _clusters(np.random.default_rng(0))
    gmm = fit_gaussian_mixture(x, n_components=3, seed=0)
    reference = SklearnMixture(n_components=3, covariance_type="full", random_state=0).fit(x.astype(np.float64))
    return x, gmm, reference


def test_density_matches_sklearn_score_samples(fitted):
    x, gmm, reference = fitted
    points = np.random.default_rng(1).uniform(-4, 4, (200, 2)).astype(np.float32)
    # float32 log-density vs sklearn's float64: errors in the Mahalanobis term (up to ~50 here) of a
    # few ulps scale rho by exp(~1e-5), so rtol=1e-4 leaves a margin while catching real mistakes.
    np.testing.assert_allclose(
        np.asarray(_density(gmm, points)), np.exp(reference.score_samples(points)), rtol=1e-4
    )
    np.testing.assert_allclose(np.asarray(_log_density(gmm, points)), reference.score_samples(points), atol=1e-4)


def test_closed_form_gradient_matches_autodiff_and_finite_differences(fitted):
    _, gmm, reference = fitted
    points = np.random.default_rng(2).uniform(-3, 3, (50, 2)).astype(np.float32)
    rho, grad = _density_and_grad(gmm, points)
    autodiff = jax.jit(jax.vmap(jax.grad(lambda p: density.density(gmm, p[None])[0])))(jnp.asarray(points))
    # Same quantity by reordered float32 maths: rtol 1e-5 of the largest gradient entry.
    np.testing.assert_allclose(np.asarray(grad), np.asarray(autodiff), rtol=1e-4, atol=1e-5 * np.abs(autodiff).max())
    np.testing.assert_allclose(np.asarray(rho), np.exp(reference.score_samples(points)), rtol=1e-4)

    # Central differences of sklearn's float64 density: truncation error O(h^2) ~ 1e-8 for h = 1e-4.
    h = 1e-4
    reference_density = lambda p: np.exp(reference.score_samples(p))
    finite = np.stack(
        [(reference_density(points + h * e) - reference_density(points - h * e)) / (2 * h) for e in np.eye(2)], axis=1
    )
    np.testing.assert_allclose(np.asarray(grad), finite, rtol=1e-3, atol=1e-4 * np.abs(finite).max())


def test_density_is_finite_far_from_the_data(fitted):
    _, gmm, _ = fitted
    points = jnp.array([[0.5, 0.5], [40.0, -40.0]], jnp.float32)
    rho, grad = _density_and_grad(gmm, points)
    assert np.isfinite(np.asarray(_log_density(gmm, points))).all()  # log-sum-exp: no log(0) far away
    assert np.isfinite(np.asarray(grad)).all() and float(rho[0]) > 0


def test_min_det_drops_tight_components_and_renormalises():
    x = _clusters(np.random.default_rng(3), tight_scale=1e-3)  # det of the tight cluster ~ 1e-12
    full = fit_gaussian_mixture(x, n_components=3, seed=0)
    filtered = fit_gaussian_mixture(x, n_components=3, seed=0, min_det=1e-6)
    determinants = np.linalg.det(np.asarray(full.covariances, np.float64))
    assert full.weights.shape == (3,) and filtered.weights.shape == (int((determinants > 1e-6).sum()),) == (2,)
    np.testing.assert_allclose(float(filtered.weights.sum()), 1.0, rtol=1e-6)
    kept = determinants > 1e-6
    np.testing.assert_allclose(filtered.means, full.means[kept], rtol=1e-6)
    np.testing.assert_allclose(filtered.weights, full.weights[kept] / full.weights[kept].sum(), rtol=1e-6)


def test_min_det_dropping_every_component_is_an_error():
    x = _clusters(np.random.default_rng(4))
    with pytest.raises(ValueError, match=r"min_det=1000.0 drops every Gaussian-mixture component"):
        fit_gaussian_mixture(x, n_components=3, seed=0, min_det=1e3)
    with pytest.raises(ValueError, match=r"min_det must be >= 0, got -1"):
        fit_gaussian_mixture(x, n_components=3, seed=0, min_det=-1)


@pytest.mark.parametrize("n_components", [0, 11, 2.5])
def test_bad_n_components_is_an_error(n_components):
    x = np.random.default_rng(5).normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"n_components must be an integer between 1 and the number of points \(10\)"):
        fit_gaussian_mixture(x, n_components=n_components, seed=0)


def test_fit_is_deterministic_in_the_seed():
    x = _clusters(np.random.default_rng(6))
    a, b = (fit_gaussian_mixture(x, n_components=4, seed=1) for _ in range(2))
    for field in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_npz_round_trip(tmp_path, fitted):
    _, gmm, _ = fitted
    save_npz(tmp_path / "gmm.npz", **to_arrays(gmm, prefix="t1_"))
    loaded = from_arrays(load_npz(tmp_path / "gmm.npz"), prefix="t1_")
    for field in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(gmm, field))

    gmms = {0: gmm, 3: gmm.replace(means=gmm.means + 1)}
    save_npz(tmp_path / "gmms.npz", **mixtures_to_arrays(gmms))
    loaded = mixtures_from_arrays(load_npz(tmp_path / "gmms.npz"))
    assert sorted(loaded) == [0, 3]
    np.testing.assert_array_equal(loaded[3].means, gmms[3].means)


def test_from_arrays_rejects_missing_or_inconsistent_arrays(fitted):
    _, gmm, _ = fitted
    arrays = to_arrays(gmm)
    with pytest.raises(ValueError, match=r"missing Gaussian-mixture array 'means'"):
        from_arrays({k: v for k, v in arrays.items() if k != "means"})
    with pytest.raises(ValueError, match=r"inconsistent Gaussian-mixture shapes"):
        from_arrays({**arrays, "weights": arrays["weights"][:2]})
    with pytest.raises(ValueError, match=r"no Gaussian-mixture arrays 't<label>_weights' found"):
        mixtures_from_arrays(arrays)


def test_fit_per_snapshot_fits_each_label():
    rng = np.random.default_rng(7)
    x = np.concatenate([_clusters(rng), _clusters(rng) + 5])
    t = np.repeat(np.array([0, 1], np.int32), len(x) // 2)
    gmms = fit_per_snapshot(x, t, n_components=3, seed=0)
    assert sorted(gmms) == [0, 1]
    assert float(gmms[1].means.mean()) > float(gmms[0].means.mean()) + 4


@pytest.mark.parametrize("dim", [2, 5])
def test_small_snapshots_get_fewer_components_with_one_warning_each(dim):
    rng = np.random.default_rng(dim)
    sizes = {0: 2000, 1: 20, 2: 2000, 3: 20}
    x = np.concatenate([rng.normal(loc=label, size=(n, dim)) for label, n in sizes.items()]).astype(np.float32)
    t = np.repeat(np.array(list(sizes), np.int32), list(sizes.values()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmms = fit_per_snapshot(x, t, n_components=10, seed=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, MixtureSizeWarning)]
    assert len(messages) == len(caught) == 2
    for label, message in zip([1, 3], messages):
        assert f"snapshot {label} has 20 points" in message and "density.n_components = 10" in message
    assert {label: len(g.weights) for label, g in gmms.items()} == {0: 10, 1: 20 // (dim + 1), 2: 10, 3: 20 // (dim + 1)}
    for label in (0, 2):  # big snapshots: exactly the uncapped fit
        alone = fit_gaussian_mixture(x[t == label], n_components=10, seed=0)
        for field in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(getattr(gmms[label], field), getattr(alone, field))


def test_component_cap_rule():
    assert components_for_size(2000, 5, 10) == 10
    assert components_for_size(60, 5, 10) == 10  # exactly n_components * (d + 1) points: not capped
    assert components_for_size(59, 5, 10) == 9
    assert components_for_size(3, 5, 10) == 1  # always at least one component
    with pytest.raises(ValueError, match=r"density.n_components must be an integer >= 1, got 0"):
        fit_per_snapshot(np.zeros((4, 2)), np.array([0, 0, 1, 1]), n_components=0, seed=0)


def test_targets_use_the_mixture_of_their_own_snapshot_and_rho_is_floored(fitted):
    _, gmm, _ = fitted
    gmms = {1: gmm, 2: gmm.replace(means=gmm.means + 3.0)}
    target = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [60.0, 60.0]], np.float32)
    couplings = Couplings(
        source=np.zeros_like(target),
        target=target,
        time=np.array([1, 2, 2, 1], np.int32),
        weight=np.full(4, 0.25, np.float32),
    )
    rho, grad_rho = log_density_gradient_at_targets(gmms, couplings, floor=1e-5)
    assert rho.shape == (4,) and grad_rho.shape == (4, 2)
    for i, label in enumerate(couplings.time):
        expected_rho, expected_grad = _density_and_grad(gmms[int(label)], target[i : i + 1])
        np.testing.assert_allclose(rho[i], max(float(expected_rho[0]), 1e-5), rtol=1e-5)
        np.testing.assert_allclose(grad_rho[i], expected_grad[0], rtol=1e-5, atol=1e-30)
    assert rho[0] != rho[2]  # same point, different snapshot mixtures
    assert rho[3] == np.float32(1e-5)  # far from the data: clipped at the floor


def test_targets_without_a_mixture_are_an_error(fitted):
    _, gmm, _ = fitted
    couplings = Couplings(np.zeros((2, 2)), np.zeros((2, 2)), np.array([1, 4]), np.full(2, 0.5))
    with pytest.raises(ValueError, match=r"no Gaussian mixture for target snapshot label\(s\) \[4\]; have \[1\]"):
        log_density_gradient_at_targets({1: gmm}, couplings)
    with pytest.raises(ValueError, match=r"floor must be > 0, got 0"):
        log_density_gradient_at_targets({1: gmm, 4: gmm}, couplings, floor=0)


def test_gaussian_mixture_is_a_frozen_pytree(fitted):
    _, gmm, _ = fitted
    assert isinstance(gmm, GaussianMixture)
    assert len(jax.tree_util.tree_leaves(gmm)) == 3
    with pytest.raises(Exception):
        gmm.weights = gmm.weights * 2
    assert set(density.__all__) >= {"GaussianMixture", "fit_gaussian_mixture", "density", "density_and_grad"}

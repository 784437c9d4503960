"""Tests of jkonetstar.simulate against closed forms of the Euler-Maruyama recursion.

No potential in the registry is a convex quadratic, so the Ornstein-Uhlenbeck check injects one
(``monkeypatch.setitem`` on the registry dict, which the simulator reads at call time; undone after
the test). The registry's own ``sphere``, V = -10 |x|^2 with grad V = -20 x, gives an exactly linear,
repulsive recursion x <- (1 + 20 dt) x + sqrt(2 beta dt) xi.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jkonetstar import energies
from jkonetstar.simulate import simulate, to_population

DT = 0.01
GROWTH = 1.0 + 20.0 * DT  # sphere: x - dt * (-20 x)
# Shapes, names and step counts are static (one compilation each); beta, dt and the box are traced.
# The tests share a few static settings to keep compilations few.
SPHERE = dict(potential="sphere", n_particles=20000, dim=2, n_steps=5)
FLAT = dict(potential="flat", n_particles=4000, dim=2, n_steps=3)


def test_shape_dtype_and_initial_box(key):
    snapshots = simulate(key, **SPHERE, low=1.0, high=2.0)
    assert snapshots.shape == (6, 20000, 2)
    assert snapshots.dtype == jnp.float32
    x0 = np.asarray(snapshots[0])
    assert x0.min() >= 1.0 and x0.max() <= 2.0
    # Uniform on [1, 2]: mean 1.5, sd 1/sqrt(12) per coordinate; 5 standard errors over 40000 values.
    assert abs(x0.mean() - 1.5) < 5 / np.sqrt(12 * x0.size)


def test_sphere_without_noise_is_exact_geometric_growth_float64(x64, key):
    # In float64 each step rounds about 3 times (2^-53 each), so after T = 5 steps the relative
    # error against the closed form (1 + 20 dt)^k x0 is below 1e-14; 1e-13 leaves room.
    snapshots = np.asarray(simulate(key, potential="sphere", n_particles=64, dim=3, n_steps=5, dt=DT))
    assert snapshots.dtype == np.float64
    x0 = snapshots[0]
    expected = np.stack([GROWTH**k * x0 for k in range(6)])
    np.testing.assert_allclose(snapshots, expected, rtol=1e-13, atol=0)


def test_sphere_without_noise_float32(key):
    # float32: about 3 roundings of 2^-24 per step (grad, dt * grad, subtraction), so after 5 steps the
    # relative error is below 15 * 6e-8 = 9e-7; rtol 1.5e-6.
    snapshots = np.asarray(simulate(key, **SPHERE, dt=DT))
    x0 = snapshots[0].astype(np.float64)
    expected = np.stack([GROWTH**k * x0 for k in range(6)])
    np.testing.assert_allclose(snapshots, expected, rtol=1.5e-6, atol=0)


def test_sphere_with_noise_matches_the_recursion_moments(key):
    # x_T = c^T x0 + e with c = 1 + 20 dt and e ~ N(0, s2), s2 = 2 beta dt sum_{k<T} c^(2k), independent
    # of x0. Over M = N d i.i.d. coordinates:
    #   mean(x_T) - c^T mean(x0) = mean(e)                     has SE sqrt(s2 / M);
    #   var(x_T) - (c^(2T) var(x0) + s2) ~ 2 c^T cov(x0, e) + (var(e) - s2)
    #                                      has SE sqrt((4 c^(2T) var(x0) s2 + 2 s2^2) / M).
    # The key is fixed, so the test is deterministic; 5 SE would be exceeded with probability ~1e-6 for
    # a random key.
    beta, n_steps = 2.0, SPHERE["n_steps"]
    snapshots = np.asarray(simulate(key, **SPHERE, beta=beta, dt=DT), dtype=np.float64)
    x0, xt = snapshots[0].ravel(), snapshots[-1].ravel()
    m = x0.size
    growth = GROWTH**n_steps
    s2 = 2 * beta * DT * sum(GROWTH ** (2 * k) for k in range(n_steps))
    se_mean = np.sqrt(s2 / m)
    assert abs(xt.mean() - growth * x0.mean()) < 5 * se_mean
    se_var = np.sqrt((4 * growth**2 * x0.var() * s2 + 2 * s2**2) / m)
    assert abs(xt.var() - (growth**2 * x0.var() + s2)) < 5 * se_var
    # Conditionally on x0 the residual is N(0, s2): its variance has SE s2 sqrt(2 / M).
    residual = xt - growth * x0
    assert abs(residual.mean()) < 5 * se_mean
    assert abs(residual.var() - s2) < 5 * s2 * np.sqrt(2 / m)


def test_beta_is_a_diffusion_coefficient_not_a_standard_deviation(key):
    # Flat potential: increments are sqrt(2 beta dt) xi, so their variance is 2 beta dt (not beta^2 dt).
    # M = 4000 * 2 * 3 i.i.d. increments; the sample variance has SE 2 beta dt sqrt(2 / M); 5 SE band.
    beta, dt = 0.5, 0.02
    snapshots = np.asarray(simulate(key, **FLAT, beta=beta, dt=dt), dtype=np.float64)
    increments = np.diff(snapshots, axis=0).ravel()
    target = 2 * beta * dt
    assert abs(increments.mean()) < 5 * np.sqrt(target / increments.size)
    assert abs(increments.var() - target) < 5 * target * np.sqrt(2 / increments.size)


def test_ornstein_uhlenbeck_mean_and_stationary_variance(monkeypatch, key):
    # Injected V(x) = a |x|^2 / 2: x <- (1 - a dt) x + sqrt(2 beta dt) xi.
    # Without noise, x_k = (1 - a dt)^k x0 (rtol 1e-5: ~3 float32 roundings per step over 40 steps).
    # With noise, after 40 steps of contraction 0.8 the initial variance has decayed by 0.8^80 ~ 2e-8,
    # and the variance is the discrete stationary value 2 beta dt / (1 - (1 - a dt)^2) (the
    # continuous-time beta / a, corrected for the step). M = 8000 i.i.d. coordinates at the last
    # snapshot: the sample variance has SE var sqrt(2 / M); 5 SE band.
    a, beta, dt, n_steps = 2.0, 0.3, 0.1, 40
    monkeypatch.setitem(energies.POTENTIALS, "test_quadratic", lambda v: 0.5 * a * jnp.sum(v**2))
    settings = dict(potential="test_quadratic", n_particles=4000, dim=2, n_steps=n_steps, dt=dt)
    quiet = np.asarray(simulate(key, **settings), dtype=np.float64)
    contraction = 1 - a * dt
    np.testing.assert_allclose(quiet[-1], contraction**n_steps * quiet[0], rtol=1e-5, atol=0)
    np.testing.assert_allclose(quiet[7], contraction**7 * quiet[0], rtol=1e-5, atol=0)

    noisy = np.asarray(simulate(key, **settings, beta=beta), dtype=np.float64)
    last = noisy[-1].ravel()
    stationary = 2 * beta * dt / (1 - contraction**2)
    assert abs(last.mean()) < 5 * np.sqrt(stationary / last.size)
    assert abs(last.var() - stationary) < 5 * stationary * np.sqrt(2 / last.size)


def test_even_interaction_conserves_the_mean_and_spreads_the_population(key):
    # W(z) = -10 |z|^2 (interaction "sphere") gives mean_j grad W(x_i - x_j) = -20 (x_i - mean_j x_j),
    # so a step is x_i <- x_i + 20 dt (x_i - mean): the mean is conserved and every deviation from it,
    # hence the standard deviation, grows by exactly 1 + 20 dt. float32 sums over 256 particles of
    # values <= 4 (with growth) leave errors ~1e-6, hence the 1e-5 tolerances.
    snapshots = np.asarray(simulate(key, potential="flat", interaction="sphere", n_particles=256, dim=2,
                                    n_steps=5, dt=DT), dtype=np.float64)
    means = snapshots.mean(axis=1)
    np.testing.assert_allclose(means, np.broadcast_to(means[0], means.shape), rtol=0, atol=1e-5)
    deviations = snapshots - means[:, None, :]
    np.testing.assert_allclose(deviations[1:], GROWTH * deviations[:-1], rtol=1e-5, atol=1e-5)
    stds = snapshots.std(axis=1)
    np.testing.assert_allclose(stds[1:] / stds[:-1], GROWTH, rtol=1e-5)


def test_without_forces_or_noise_nothing_moves(key):
    snapshots = np.asarray(simulate(key, **FLAT))
    np.testing.assert_array_equal(snapshots, np.broadcast_to(snapshots[0], snapshots.shape))


def test_same_key_same_paths_different_key_different_paths(key):
    key_a, key_b = jax.random.split(key)
    settings = dict(FLAT, beta=0.5)
    first = np.asarray(simulate(key_a, **settings))
    np.testing.assert_array_equal(first, np.asarray(simulate(key_a, **settings)))
    other = np.asarray(simulate(key_b, **settings))
    assert not np.any(first[0] == other[0])  # initial positions differ
    assert not np.any(np.diff(first, axis=0) == np.diff(other, axis=0))  # and so does the noise


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(dt=-0.01), "dt must be > 0, got -0.01"),
        (dict(dt=0.0), "dt must be > 0, got 0.0"),
        (dict(n_particles=0), "n_particles must be > 0, got 0"),
        (dict(n_particles=10.0), "n_particles must be an integer, got 10.0"),
        (dict(n_particles=True), "n_particles must be an integer, got True"),
        (dict(dim=0), "dim must be > 0, got 0"),
        (dict(n_steps=-1), "n_steps must be > 0, got -1"),
        (dict(potential="wavy"), "unknown potential 'wavy'"),
        (dict(interaction="holder_table"), "unknown interaction 'holder_table'"),
        (dict(beta=-1.0), "beta must be >= 0, got -1.0"),
        (dict(beta=float("nan")), "beta must be >= 0, got nan"),
        (dict(low=4.0, high=-4.0), "initial box must have high > low, got [4.0, -4.0]"),
    ],
)
def test_bad_settings_raise_naming_the_setting(key, override, message):
    settings = dict(potential="sphere", n_particles=8, dim=2) | override
    with pytest.raises(ValueError, match=re.escape(message)):
        simulate(key, **settings)


def test_to_population_is_time_major_with_particle_ids():
    n_times, n_particles, dim = 3, 4, 2
    snapshots = np.arange(n_times * n_particles * dim, dtype=np.float32).reshape(n_times, n_particles, dim)
    x, t, particle = to_population(snapshots)
    assert x.shape == (n_times * n_particles, dim)
    assert t.shape == particle.shape == (n_times * n_particles,)
    assert t.dtype == particle.dtype == np.int32
    np.testing.assert_array_equal(t, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(particle, [0, 1, 2, 3] * 3)
    for row in range(len(x)):
        np.testing.assert_array_equal(x[row], snapshots[t[row], particle[row]])


def test_to_population_of_independent_snapshots_gives_every_row_its_own_particle():
    snapshots = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    x, t, particle = to_population(snapshots, independent=True)
    np.testing.assert_array_equal(particle, np.arange(12))
    np.testing.assert_array_equal(x, snapshots.reshape(12, 2))
    np.testing.assert_array_equal(t, np.repeat([0, 1, 2], 4))

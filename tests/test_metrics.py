"""Tests for jkonetstar.metrics: exact W1 against POT, scipy in 1-D and the translation theorem, and
the one-step / cumulative evaluation loops."""

import jax
import numpy as np
import ot
import pytest
from scipy.stats import wasserstein_distance

from jkonetstar import metrics
from jkonetstar.metrics import cumulative_w1, one_step_predictions, one_step_w1, wasserstein1


def _pot_w1(x, y):
    cost = ot.dist(np.asarray(x, np.float64), np.asarray(y, np.float64), metric="euclidean")
    return ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=1_000_000)


def _static_time_course(rng, n=40, n_labels=4, dim=2):
    x = rng.uniform(-4, 4, (n, dim)).astype(np.float32)
    return np.tile(x, (n_labels, 1)), np.repeat(np.arange(n_labels, dtype=np.int32), n)


@pytest.mark.parametrize("shift", [[0.3, -0.4], [2.0, 0.0], [-1.0, 7.5]])
def test_w1_of_a_translation_is_the_shift_length(shift):
    # W1(mu, mu + s) = |s|: the identity coupling costs |s| and the 1-Lipschitz f(x) = <x, s>/|s|
    # gives the matching lower bound (Kantorovich-Rubinstein duality).
    x = np.random.default_rng(0).normal(size=(60, 2))
    shift = np.asarray(shift)
    np.testing.assert_allclose(wasserstein1(x, x + shift), np.linalg.norm(shift), rtol=1e-12)
    # Unequal sizes (the network-simplex path): the cloud listed twice is the same measure.
    np.testing.assert_allclose(wasserstein1(np.concatenate([x, x]), x + shift), np.linalg.norm(shift), rtol=1e-12)


@pytest.mark.parametrize(("n", "m", "dim"), [(50, 50, 2), (200, 200, 3), (37, 52, 2), (80, 20, 5)])
def test_w1_equals_pot_emd2(n, m, dim):
    rng = np.random.default_rng(n + m + dim)
    x = rng.uniform(-4, 4, (n, dim)).astype(np.float32)
    y = rng.normal(size=(m, dim)).astype(np.float32)
    # Both are exact LP optima in float64; they differ only by summation order.
    np.testing.assert_allclose(wasserstein1(x, y), _pot_w1(x, y), rtol=1e-10)


@pytest.mark.parametrize(("n", "m"), [(100, 100), (70, 45)])
def test_w1_in_one_dimension_equals_scipy(n, m):
    rng = np.random.default_rng(n * m)
    x, y = rng.normal(size=(n, 1)), rng.exponential(size=(m, 1))
    np.testing.assert_allclose(wasserstein1(x, y), wasserstein_distance(x[:, 0], y[:, 0]), rtol=1e-10)


def test_w1_of_non_finite_points_is_nan():
    x = np.random.default_rng(1).normal(size=(10, 2))
    assert np.isnan(wasserstein1(np.full((10, 2), np.nan), x))
    assert np.isnan(wasserstein1(x, np.where(np.arange(20).reshape(10, 2) == 3, np.inf, x)))


def test_w1_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"expected point clouds \[n, d\] and \[m, d\], got shapes \(4, 2\)"):
        wasserstein1(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"cannot compare an empty point cloud \(sizes 0 and 4\)"):
        wasserstein1(np.zeros((0, 2)), np.zeros((4, 2)))


def test_one_step_identity_on_static_data_is_zero_and_shift_gives_its_length():
    x, t = _static_time_course(np.random.default_rng(2))
    identity = one_step_w1(lambda key, x_source, t_target: x_source, x, t, jax.random.key(0))
    assert identity.shape == (3,)
    np.testing.assert_array_equal(identity, np.zeros(3))

    shift = np.array([0.6, -0.8], np.float32)
    shifted = one_step_w1(lambda key, x_source, t_target: x_source + shift, x, t, jax.random.key(0))
    np.testing.assert_allclose(shifted, np.full(3, 1.0), rtol=1e-6)  # |s| = 1, shift added in float32


def test_one_step_predictions_pair_each_snapshot_with_its_key_and_target():
    x, t = _static_time_course(np.random.default_rng(4))
    calls = []

    def predict(key, x_source, t_target):
        calls.append((int(jax.random.key_data(key)[-1]), len(x_source), t_target))
        return x_source + t_target

    labels, observed, predicted = one_step_predictions(predict, x, t, jax.random.key(0))
    np.testing.assert_array_equal(labels, np.unique(t))
    assert len(observed) == 4 and len(predicted) == 3
    for i in range(3):
        np.testing.assert_array_equal(observed[i], x[t == labels[i]])
        np.testing.assert_allclose(predicted[i], observed[i] + labels[i + 1], rtol=1e-6)
    # step i uses fold_in(key, l_i), as one_step_w1 documents
    want = [int(jax.random.key_data(jax.random.fold_in(jax.random.key(0), int(l)))[-1]) for l in labels[:-1]]
    assert [c[0] for c in calls] == want and [c[2] for c in calls] == labels[1:].tolist()


def test_cumulative_rolls_out_the_prediction():
    rng = np.random.default_rng(3)
    base = rng.uniform(-4, 4, (30, 2)).astype(np.float32)
    step = np.array([0.3, 0.4], np.float32)  # |step| = 0.5
    x = np.concatenate([base + label * step for label in range(4)])
    t = np.repeat(np.arange(4, dtype=np.int32), 30)
    moving = lambda key, x_source, t_target: x_source + step
    standing = lambda key, x_source, t_target: x_source
    np.testing.assert_allclose(cumulative_w1(moving, x, t, jax.random.key(0)), np.zeros(3), atol=1e-5)
    # Standing still: after i + 1 steps the observed population is (i + 1) * step away.
    np.testing.assert_allclose(cumulative_w1(standing, x, t, jax.random.key(0)), [0.5, 1.0, 1.5], rtol=1e-6)
    # One step from the observed population is always one step short.
    np.testing.assert_allclose(one_step_w1(standing, x, t, jax.random.key(0)), np.full(3, 0.5), rtol=1e-6)


def test_non_finite_predictions_give_nan_without_crashing():
    x, t = _static_time_course(np.random.default_rng(4))

    def diverges_after_first(key, x_source, t_target):
        if t_target >= 2:
            return np.full_like(x_source, np.nan)
        return x_source

    one_step = one_step_w1(diverges_after_first, x, t, jax.random.key(0))
    np.testing.assert_array_equal(np.isnan(one_step), [False, True, True])
    calls = []

    def diverges_once(key, x_source, t_target):
        calls.append(t_target)
        return np.full_like(x_source, np.nan) if t_target == 2 else x_source

    cumulative = cumulative_w1(diverges_once, x, t, jax.random.key(0))
    np.testing.assert_array_equal(np.isnan(cumulative), [False, True, True])
    assert calls == [1, 2]  # a non-finite population is not fed back to the predictor


def test_each_step_gets_its_own_folded_key_and_the_target_label():
    x, t = _static_time_course(np.random.default_rng(5), n_labels=3)
    t = t * 2 + 1  # labels 1, 3, 5: keys and targets follow the labels, not the positions
    seen = []

    def record(key, x_source, t_target):
        seen.append((jax.random.key_data(key), t_target))
        return x_source

    key = jax.random.key(7)
    one_step_w1(record, x, t, key)
    assert [target for _, target in seen] == [3, 5]
    for (data, _), source in zip(seen, [1, 3]):
        np.testing.assert_array_equal(data, jax.random.key_data(jax.random.fold_in(key, source)))


def test_evaluation_needs_two_snapshots():
    with pytest.raises(ValueError, match=r"need at least two snapshot labels in t_test, got \[0\]"):
        one_step_w1(lambda k, x, t: x, np.zeros((5, 2)), np.zeros(5, np.int32), jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected x_test of shape \[n, d\] and t_test of shape \[n\]"):
        cumulative_w1(lambda k, x, t: x, np.zeros((5, 2)), np.zeros(4, np.int32), jax.random.key(0))


def test_module_declares_its_public_names():
    assert set(metrics.__all__) == {"wasserstein1", "one_step_predictions", "one_step_w1", "cumulative_w1",
                                  "gradient_recovery"}


def test_no_motion_reference_is_the_w1_between_consecutive_test_snapshots():
    # The reference predicts x_{t+1} = x_t: its one-step W1 is W1(X_t, X_{t+1}), here against POT's exact EMD
    # with the Euclidean cost on snapshots of unequal sizes.
    import ot

    from jkonetstar import pipeline

    rng = np.random.default_rng(3)
    sizes = [40, 55, 47]
    x = np.concatenate([rng.normal(loc=k, size=(n, 2)) for k, n in enumerate(sizes)]).astype(np.float32)
    t = np.repeat([0, 1, 2], sizes)
    reference = pipeline.no_motion(x, t)
    expected = [ot.emd2(ot.unif(sizes[k]), ot.unif(sizes[k + 1]),
                        ot.dist(x[t == k].astype(np.float64), x[t == k + 1].astype(np.float64), metric="euclidean"))
                for k in range(2)]
    np.testing.assert_allclose(reference["w1_per_step"], expected, rtol=1e-6)
    assert reference["w1_mean"] == pytest.approx(np.mean(expected), rel=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 20])
def test_euclidean_costs_equal_scipy_cdist_to_the_last_bit(dim):
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(dim)
    x, y = rng.normal(size=(37, dim)).astype(np.float32), rng.normal(size=(41, dim))
    np.testing.assert_array_equal(metrics.euclidean_costs(x, y), cdist(np.float64(x), y))


def test_assignment_solver_is_scipys_without_importing_scipy_optimize():
    import subprocess
    import sys

    from scipy.optimize import linear_sum_assignment

    cost = np.random.default_rng(3).uniform(size=(30, 30))
    np.testing.assert_array_equal(metrics._linear_sum_assignment()(cost), linear_sum_assignment(cost))
    # a fresh process: W1 of equal clouds loads the compiled solver alone
    code = ("import sys, numpy as np; from jkonetstar import metrics; "
            "x = np.random.default_rng(0).normal(size=(20, 2)); metrics.wasserstein1(x, x + 1.0); "
            "print('scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

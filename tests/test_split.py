"""Tests of jkonetstar.split: which rows go where, in which order, and the errors.

Rows carry their own identity in ``x``: column 0 is the particle id (or row number), column 1 the
time, so every check reads the identities straight off the returned arrays.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from jkonetstar.simulate import to_population
from jkonetstar.split import split


def _tagged_trajectories(n_times: int = 4, n_particles: int = 10):
    """Population rows ``x = (particle id, time)`` in the simulator's (time-major) order."""
    ids = np.arange(n_particles)
    snapshots = np.stack([np.stack([ids, np.full(n_particles, t)], axis=1) for t in range(n_times)]).astype(float)
    return to_population(snapshots)


@pytest.mark.parametrize("test_ratio", [0.5, 0.3, 0.8])
def test_trajectory_split_holds_out_the_same_particles_at_every_time(test_ratio):
    x, t, particle = _tagged_trajectories(n_times=4, n_particles=10)
    (x_train, t_train), (x_test, t_test) = split(np.random.default_rng(0), x, t, particle, test_ratio=test_ratio)
    n_test = round(test_ratio * 10)
    assert len(x_test) == 4 * n_test and len(x_train) == 4 * (10 - n_test)
    np.testing.assert_array_equal(x_train[:, 1], t_train)
    np.testing.assert_array_equal(x_test[:, 1], t_test)
    test_ids = [set(x_test[t_test == k, 0]) for k in range(4)]
    train_ids = [set(x_train[t_train == k, 0]) for k in range(4)]
    assert all(ids == test_ids[0] for ids in test_ids)
    assert all(ids == train_ids[0] for ids in train_ids)
    assert test_ids[0].isdisjoint(train_ids[0]) and test_ids[0] | train_ids[0] == set(range(10))


def test_trajectory_split_blocks_are_paired_row_by_row():
    # Rows come ordered by time, then original order: with the simulator's layout the block of time k
    # and the block of time k + 1 list the same particles in the same order (what paired couplings need).
    x, t, particle = _tagged_trajectories(n_times=5, n_particles=12)
    for (x_part, t_part) in split(np.random.default_rng(3), x, t, particle, test_ratio=0.25):
        assert np.all(np.diff(t_part) >= 0)
        blocks = [x_part[t_part == k, 0] for k in range(5)]
        for block in blocks:
            np.testing.assert_array_equal(block, blocks[0])
        assert np.all(np.diff(blocks[0]) > 0)  # original (increasing id) order within a snapshot


def test_rows_come_back_sorted_by_time_then_original_order():
    # Shuffled input: output is sorted by t, ties keep the input order (column 0 = input row number).
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, size=40)
    x = np.stack([np.arange(40), t], axis=1).astype(float)
    for by, particle in (("population", None), ("trajectory", np.arange(40) % 8)):
        for (x_part, t_part) in split(np.random.default_rng(2), x, t, particle, test_ratio=0.4, by=by):
            np.testing.assert_array_equal(x_part[:, 1], t_part)
            order = np.lexsort((x_part[:, 0], t_part))  # by time, then by input row
            np.testing.assert_array_equal(order, np.arange(len(t_part)))


@pytest.mark.parametrize("test_ratio", [0.3, 0.5])
def test_population_split_takes_the_ratio_of_every_snapshot(test_ratio):
    # Unbalanced snapshots of 10, 7 and 33 points: each loses ratio * size points to the test set,
    # rounded to an integer (so within half a point; 0.5 * 7 = 3.5 may go either way).
    sizes = {0: 10, 1: 7, 2: 33}
    t = np.concatenate([np.full(size, label) for label, size in sizes.items()])
    x = np.stack([np.arange(len(t)), t], axis=1).astype(float)
    (x_train, t_train), (x_test, t_test) = split(np.random.default_rng(0), x, t, by="population", test_ratio=test_ratio)
    for label, size in sizes.items():
        n_test = int(np.sum(t_test == label))
        assert abs(n_test - test_ratio * size) <= 0.5
        assert n_test + int(np.sum(t_train == label)) == size
    assert sorted(np.concatenate([x_train[:, 0], x_test[:, 0]])) == list(range(len(t)))


def test_population_split_ignores_particle_ids():
    x, t, particle = _tagged_trajectories(n_times=3, n_particles=20)
    (_, _), (x_test, t_test) = split(np.random.default_rng(0), x, t, particle, by="population")
    held_out = [set(x_test[t_test == k, 0]) for k in range(3)]
    assert not (held_out[0] == held_out[1] == held_out[2])  # drawn independently per snapshot


def test_same_generator_seed_same_split_different_seed_different_split():
    x, t, particle = _tagged_trajectories(n_times=2, n_particles=50)
    first = split(np.random.default_rng(7), x, t, particle)
    again = split(np.random.default_rng(7), x, t, particle)
    other = split(np.random.default_rng(8), x, t, particle)
    np.testing.assert_array_equal(first[1][0], again[1][0])
    assert not np.array_equal(first[1][0], other[1][0])


@pytest.mark.parametrize("test_ratio", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_ratio_outside_open_unit_interval_raises(test_ratio):
    x, t, particle = _tagged_trajectories()
    with pytest.raises(ValueError, match=re.escape(f"test_ratio must be in (0, 1), got {test_ratio!r}")):
        split(np.random.default_rng(0), x, t, particle, test_ratio=test_ratio)


def test_unknown_split_raises():
    x, t, particle = _tagged_trajectories()
    with pytest.raises(ValueError, match=re.escape("unknown split 'time'")):
        split(np.random.default_rng(0), x, t, particle, by="time")


@pytest.mark.parametrize("particle", [None, "negative"])
def test_trajectory_split_without_ids_raises(particle):
    x, t, ids = _tagged_trajectories()
    if particle == "negative":
        particle = np.where(np.arange(len(ids)) == 3, -1, ids)
    with pytest.raises(ValueError, match="split by trajectory needs particle ids"):
        split(np.random.default_rng(0), x, t, particle, by="trajectory")


def test_ratio_that_empties_a_set_raises():
    x, t, particle = _tagged_trajectories(n_particles=10)
    message = "test_ratio=0.01 leaves an empty train or test set of 10 trajectories"
    with pytest.raises(ValueError, match=re.escape(message)):
        split(np.random.default_rng(0), x, t, particle, test_ratio=0.01)
    small = np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match=re.escape("test_ratio=0.2 leaves snapshot 1 (1 points) empty")):
        split(np.random.default_rng(0), np.zeros((4, 2)), small, by="population", test_ratio=0.2)

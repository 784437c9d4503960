"""Shared pieces of the benchmark scripts: timing, this machine's matmul rate, and normalised figures.

A wall time depends on the machine and on what else runs on it. Each script therefore measures the float32
matmul rate (2048 x 2048 products, GFLOP/s) in the same run, on the cores the process may use (so a run
pinned with ``taskset -c 0`` measures one core), and prints every figure beside it and as a normalised cost:
seconds x matmul rate, in GFLOP-equivalents (the work a dense matmul would have done in that time). A target
is given in seconds on the reference machine (the idle 2-core machine of issue 12, 175 GFLOP/s on 2 cores)
and as the normalised cost those seconds are there; the normalised figure reads the same on a faster or a
slower machine. On a loaded machine (load average above the cores: other processes take turns on them) the
wall figures are not comparable, since a large matmul loses more to sharing than a benchmark made of small
operations; the scripts then also print CPU seconds, and the matmul rate per CPU second, which sharing
changes much less.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REFERENCE_RATE = {2: 175.0, 1: 87.5}
"""Matmul rate (GFLOP/s) of the reference machine by number of cores: 175 measured on 2 (issue 12); 1 core
taken as half of it (the 2048^2 product scales to the second core)."""


ROOT = Path(__file__).resolve().parents[1]


def cli_seconds(*command) -> float:
    """Wall seconds of one ``python -m jkonetstar <command>`` process (start, imports and compilation included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jkonetstar", "-q", *map(str, command)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def whole_job_seconds(n_particles: int, trains: dict, evaluated: str) -> dict[str, float]:
    """Seconds of each stage run as one workflow job through the command line, the workflow's file names in a
    temporary directory: ``simulate`` (wavy_plateau, ``n_particles`` per snapshot), ``couplings``, ``train
    <method>`` for each ``trains`` entry ``{method: extra flags}``, and ``evaluate`` of method ``evaluated``."""
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def files(method, *kinds):  # per-method output paths, so that runs of several methods sit side by side
            suffix = {"model": "npz", "history": "csv", "fit": "json"}
            return [a for kind in kinds for a in (f"--{kind}", tmp / f"{method}.{kind}.{suffix[kind]}")]

        seconds["simulate"] = cli_seconds("simulate", "--potential", "wavy_plateau", "--n-particles", n_particles,
                                          "--dir", tmp)
        seconds["couplings"] = cli_seconds("couple", "--dir", tmp)
        for method, flags in trains.items():
            seconds[f"train {method}"] = cli_seconds("train", "--method", method, "--dir", tmp,
                                                     *files(method, "model", "history", "fit"), *flags)
        seconds["evaluate"] = cli_seconds("evaluate", "--dir", tmp, *files(evaluated, "model", "fit"),
                                          "--metrics", tmp / "metrics.json", "--levels", tmp / "levels.png",
                                          "--predictions", tmp / "predictions.png")
    return seconds


def timed(fn, repeats):
    """Median wall seconds and median process CPU seconds of ``fn()`` (its result blocked on) over ``repeats``."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus))


def median_time(fn, repeats):
    """Median wall seconds of ``fn()`` (its result blocked on) over ``repeats`` calls."""
    return timed(fn, repeats)[0]


def matmul_rates(n=2048, repeats=5):
    """This process's float32 matmul rate: GFLOP per wall second and per CPU second (``n x n`` products)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    wall, cpu = timed(lambda: dot(a, a), repeats)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / cpu / 1e9


def matmul_rate(n=2048, repeats=5):
    """This process's float32 matmul rate in GFLOP/s (median of ``repeats`` ``n x n`` products)."""
    return matmul_rates(n, repeats)[0]


def loaded():
    """Whether other processes compete for the machine's cores (1-minute load average above their number + 1,
    the benchmark's own threads counted)."""
    return os.getloadavg()[0] > (os.cpu_count() or 1) + 1.0


def cores():
    return len(os.sched_getaffinity(0))


def figure(name, seconds, rate, target_seconds=None, unit="s", note="", cpu=None):
    """Prints ``name``: seconds, the run's matmul rate, normalised cost, and the target (seconds and normalised).

    ``cpu``: ``(CPU seconds, matmul GFLOP per CPU second)`` of the same figure, printed on a second line.
    Returns whether the normalised cost meets the normalised target (``None`` without a target, or on a
    loaded machine, where no verdict is printed).
    """
    scale = 1e3 if unit == "ms" else 1.0
    normalised = seconds * rate
    text = f"  {name:<52s} {seconds * scale:9.4g} {unit:<2s}  at {rate:6.1f} GFLOP/s  = {normalised:9.4g} GFLOP-eq"
    met = None
    if target_seconds is not None:
        reference = REFERENCE_RATE.get(cores(), REFERENCE_RATE[2])
        target_normalised = target_seconds * reference
        met = None if loaded() else normalised <= target_normalised
        verdict = {None: "no verdict, machine loaded", True: "met", False: "MISSED"}[met]
        text += (f"   target <= {target_seconds * scale:.4g} {unit} ({target_normalised:.4g} GFLOP-eq at "
                 f"{reference:g} GFLOP/s): {verdict}")
    if note:
        text += f"; {note}"
    if cpu is not None:
        cpu_seconds, cpu_rate = cpu
        text += (f"\n  {'  same, CPU time':<52s} {cpu_seconds * scale:9.4g} {unit:<2s}  at {cpu_rate:6.1f} "
                 f"GFLOP/CPU-s = {cpu_seconds * cpu_rate:9.4g} GFLOP-eq")
        if target_seconds is not None and met is not None:
            text += f"   {'met' if cpu_seconds * cpu_rate <= target_normalised else 'MISSED'}"
    print(text, flush=True)
    return met

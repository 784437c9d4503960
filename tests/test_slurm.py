"""The SLURM profiles: static checks, and a real run on a single-node Slurm cluster.

The cluster test starts Slurm with scripts/slurm-local.sh (installing slurm-wlm and munge with
apt-get when missing), submits the tiny workflow through the SLURM executor and checks every
output. Where Slurm cannot be started it is skipped, with the reason in the test summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from snakemake_runs import (
    PER_RUN_RULES,
    ROOT,
    copy_checkout,
    dry_run,
    one_dataset_config,
    parse_dry_run,
    plan,
    run_snakemake,
    snakemake_command,
    snakemake_env,
    write_config,
)

PROFILES = ROOT / "profiles"
SLURM_LOCAL = ROOT / "scripts" / "slurm-local.sh"
CONFIG = Path("config/test-slurm.yaml")  # relative to the copy
RUN_TIMEOUT_S = 900


def load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "profile.yaml").read_text())


def evaluate_resource(value, attempt: int = 1):
    """A profile resource as Snakemake evaluates it (strings are Python expressions of attempt)."""
    if isinstance(value, str):
        try:
            return eval(value, {}, {"attempt": attempt})  # noqa: S307 - trusted, repository file
        except NameError:
            return value
    return value


def local_rules() -> set[str]:
    """Rule names declared local in the workflow (`localrules:` lists and `localrule: True`)."""
    names = set()
    for path in [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        for block in re.finditer(r"^localrules:\s*((?:[\w\s,]|\n[ \t]+)+)", text, re.M):
            names.update(n for n in re.split(r"[\s,]+", block[1]) if n)
        for rule in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
            if re.search(r"^\s+localrule:\s*True", rule[2], re.M):
                names.add(rule[1])
    return names


# --- static checks of the profiles -------------------------------------------------------------


@pytest.mark.parametrize("name", ["slurm", "slurm-gpu", "slurm-ci"])
def test_profile_repeats_rerun_triggers_of_default(name):
    assert load_profile(name)["rerun-triggers"] == load_profile("default")["rerun-triggers"]


@pytest.mark.parametrize("name", ["slurm", "slurm-gpu"])
def test_memory_grows_with_attempt_for_every_submitted_rule(name):
    resources = load_profile(name)["set-resources"]
    for rule in PER_RUN_RULES:
        assert evaluate_resource(resources[rule]["mem_mb"], 2) == 2 * evaluate_resource(resources[rule]["mem_mb"], 1)
    assert load_profile(name)["retries"] >= 1


@pytest.mark.parametrize("name", ["slurm", "slurm-gpu", "slurm-ci"])
def test_groups_hold_one_kind_of_job_and_fit_a_partition(name):
    """Group caveats: string resources must match across a group, and its runtime is the sum over
    the jobs it runs one after another, which must stay within common partition limits (2 h)."""
    profile = load_profile(name)
    groups: dict[str, list[str]] = {}
    for entry in profile.get("groups", []):
        rule, group = entry.split("=")
        groups.setdefault(group, []).append(rule)
    components = dict(entry.split("=") for entry in profile.get("group-components", []))
    assert set(groups) == set(components)
    defaults = profile["default-resources"]
    for group, rules in groups.items():
        resolved = [{**defaults, **profile["set-resources"].get(rule, {})} for rule in rules]
        strings = [{k: v for k, v in r.items() if isinstance(evaluate_resource(v), str)} for r in resolved]
        assert all(s == strings[0] for s in strings), f"group {group}: string resources differ: {strings}"
        assert not any("gpu" in r for r in resolved), f"group {group} holds GPU jobs"
        runtime = int(components[group]) * sum(evaluate_resource(r["runtime"]) for r in resolved)
        assert runtime <= 120, f"group {group} asks for {runtime} min"
    assert "train" not in {rule for rules in groups.values() for rule in rules}


def test_gpu_profile_differs_only_in_train():
    cpu, gpu = load_profile("slurm"), load_profile("slurm-gpu")
    assert gpu["set-resources"]["train"]["gpu"] == 1
    assert "cpus_per_gpu" in gpu["set-resources"]["train"]
    # The plugin prefers cpus_per_task over cpus_per_gpu, so no default may set it.
    assert "cpus_per_task" not in gpu["set-resources"]["train"]
    assert "cpus_per_task" not in gpu["default-resources"]
    for profile in (cpu, gpu):
        del profile["set-resources"]["train"]
        del profile["set-threads"]["train"]
    assert cpu == gpu


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the repository for dry runs (they write .snakemake/ where they run)."""
    return copy_checkout(tmp_path_factory.mktemp("checkout"))


def test_aggregate_rules_are_local(checkout):
    graph = dry_run(checkout, Path(".test/config/config.yaml"), "--forceall")
    aggregates = {p.job.rule for p in graph} - set(PER_RUN_RULES)
    assert aggregates and aggregates <= local_rules()
    assert not set(PER_RUN_RULES) & local_rules()


def test_slurm_profile_batches_the_paper_grid(checkout):
    """A dry run of the paper config under profiles/slurm (no Slurm needed): jobs are packed into
    fewer submissions, train keeps one job per submission, and resources are resolved."""
    output = run_snakemake(checkout, Path("config/paper.yaml"), "--dry-run", profile="profiles/slurm")
    jobs = parse_dry_run(output)
    per_run = [p for p in jobs if p.job.rule in PER_RUN_RULES]
    groups = output.count("Group job ")
    grouped = sum(1 for p in per_run if p.job.rule in {"simulate", "couplings", "evaluate"})
    submissions = groups + sum(1 for p in per_run if p.job.rule == "train")
    assert groups > 0 and submissions < len(per_run)
    assert grouped > groups
    print(f"paper grid under profiles/slurm: {len(per_run)} cluster jobs in {submissions} submissions")


# --- a real single-node cluster --------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node Slurm; started (and stopped afterwards) unless one already runs."""
    if os.geteuid() != 0:
        pytest.skip("Slurm test skipped: scripts/slurm-local.sh needs root (apt-get, munged, slurmd)")
    if subprocess.run([SLURM_LOCAL, "status"], capture_output=True).returncode == 0:
        yield "reused"
        return
    try:
        started = subprocess.run([SLURM_LOCAL, "up"], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        started = None
    if started is None or started.returncode != 0:
        tail = "timed out after 600 s" if started is None else (started.stdout + started.stderr)[-1500:]
        subprocess.run([SLURM_LOCAL, "stop"], capture_output=True)
        message = f"Slurm test skipped: could not start a local Slurm cluster: {tail}"
        print(message, file=sys.stderr)
        pytest.skip(message)
    try:
        yield "started"
    finally:
        stopped = subprocess.run([SLURM_LOCAL, "stop"], capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def check_output_file(path: Path) -> None:
    """Fails unless ``path`` is a complete file of its kind."""
    assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
    suffix = path.suffix
    if suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            assert arrays.files, f"{path} holds no arrays"
            for name in arrays.files:
                arrays[name]
    elif suffix == ".csv":
        assert len(path.read_text().splitlines()) >= 2, f"{path} has no rows"
    elif suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    elif suffix == ".pdf":
        data = path.read_bytes()
        assert data.startswith(b"%PDF") and b"%%EOF" in data[-1024:], f"{path} is not a complete PDF"


@pytest.mark.slurm
def test_tiny_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    root = copy_checkout(tmp_path / "repo")
    write_config(root / CONFIG, one_dataset_config())
    planned = dry_run(root, CONFIG, profile="profiles/slurm-ci")
    assert {p.job.rule for p in planned} >= set(PER_RUN_RULES)

    started = time.monotonic()
    result = subprocess.run(
        ["timeout", "-k", "10", "-s", "INT", str(RUN_TIMEOUT_S),
         *snakemake_command(CONFIG, "--executor", "slurm", profile="profiles/slurm-ci")],
        cwd=root, env=snakemake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    wall = time.monotonic() - started
    print(f"tiny workflow through Slurm: {len(planned)} jobs in {wall:.0f} s")
    log = result.stdout
    assert result.returncode == 0, f"snakemake exited {result.returncode} after {wall:.0f} s:\n{log[-6000:]}"

    for job in planned:
        for output in job.outputs:
            check_output_file(root / output)
    assert not [p for p in (root / "results").rglob("*") if ".tmp" in p.name], "temporary files left"
    assert not [p for p in (root / ".snakemake" / "incomplete").rglob("*") if p.is_file()
                and p.name != "migration_underway"], "outputs still marked incomplete"

    # Every cluster job went through sbatch and completed; aggregates ran locally.
    slurm_ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    per_run = [p for p in planned if p.job.rule in PER_RUN_RULES]
    assert 0 < len(slurm_ids) < len(per_run), "short jobs were not batched into group jobs"
    states = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", ",".join(slurm_ids), "-o", "%i %T"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert dict(zip(states[::2], states[1::2])) == {i: "COMPLETED" for i in slurm_ids}
    for rule in {p.job.rule for p in planned} - set(PER_RUN_RULES):
        assert re.search(rf"^localrule {rule}:", log, re.M), f"{rule} did not run locally"
    for rule in PER_RUN_RULES:
        assert not re.search(rf"^\s*localrule {rule}:", log, re.M), f"{rule} ran on the submit host"
    logdirs = {p.name for p in (root / ".snakemake" / "slurm_logs").iterdir()}
    assert {"group_prep_couplings_simulate", "group_eval_evaluate", "rule_train"} <= logdirs

    assert plan(root, CONFIG, profile="profiles/slurm-ci") == []

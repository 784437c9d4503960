"""Rerun only what is stale: each test compares the job list of a dry run with the jobs that
depend on what was changed.

One copy of the repository runs the tiny test config (cut to one dataset) once; every test then
works in its own copy of that executed copy, so the developer's results/ are never touched.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from snakemake_runs import (
    PER_RUN_RULES,
    ROOT,
    Job,
    copy_checkout,
    copy_run,
    downstream,
    dry_run,
    library_files_imported_by,
    one_dataset_config,
    parse_rules,
    plan,
    run_snakemake,
    snakemake_command,
    snakemake_env,
    write_config,
)

CONFIG = Path("config/test-rerun.yaml")  # relative to each copy


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    """A copy of the repository in which the one-dataset tiny config ran to completion."""
    root = copy_checkout(tmp_path_factory.mktemp("executed"))
    write_config(root / CONFIG, one_dataset_config())
    run_snakemake(root, CONFIG, "--cores", "2")
    return root


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """Every job of the workflow with its inputs and outputs (a forced dry run, nothing executed)."""
    root = copy_checkout(tmp_path_factory.mktemp("graph"))
    write_config(root / CONFIG, one_dataset_config())
    return dry_run(root, CONFIG, "--forceall")


@pytest.fixture
def work(executed, tmp_path) -> Path:
    """A private copy of the executed copy, timestamps and .snakemake metadata included."""
    return copy_run(executed, tmp_path / "work")


def jobs_of(graph, rule: str, **wildcards) -> set[Job]:
    return {p.job for p in graph if p.job.rule == rule and all(p.job.wc.get(k) == v for k, v in wildcards.items())}


def mlp_solver(config: dict) -> str:
    """A solver of the test config that is trained by gradient steps (has a learning rate)."""
    grid_solvers = config["experiments"]["exp1"]["solvers"]
    return next(s for s in grid_solvers if "linear" not in s)


def append_line(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(f"\n{line}\n")


def test_graph_covers_every_stage(graph):
    rules = {p.job.rule for p in graph}
    assert set(PER_RUN_RULES) <= rules
    assert len(jobs_of(graph, "train")) >= 2, "the test config needs at least two solvers"


def test_rules_declare_the_code_they_run_as_inputs(graph):
    """`code` is not among the rerun triggers (a fresh clone would rerun everything), so each
    rule's script and the library modules the script imports must be inputs of the rule: an
    edit to them then reruns exactly the jobs of that rule and downstream."""
    rules = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        rules.update(parse_rules(path))
    problems = []
    for name, rule in sorted(rules.items()):
        inputs = next((set(p.inputs) for p in graph if p.job.rule == name), None)
        if not rule["script"] or inputs is None:
            continue
        script = Path(rule["script"])
        needed = {script, *library_files_imported_by(script)}
        missing = sorted(str(f.relative_to(ROOT)) for f in needed if str(f.relative_to(ROOT)) not in inputs)
        if missing:
            problems.append(f"rule {name} does not declare {missing} as input")
    assert not problems, "\n".join(problems)


def test_second_run_plans_nothing(work):
    assert plan(work, CONFIG) == []
    # Same under the SLURM profile (it must repeat the rerun triggers of profiles/default).
    assert plan(work, CONFIG, profile="profiles/slurm") == []


def test_touching_code_plans_nothing(work):
    later = time.time() + 60
    for path in [*work.joinpath("src").rglob("*.py"), *work.joinpath("workflow").rglob("*")]:
        if path.is_file():
            os.utime(path, (later, later))
    assert plan(work, CONFIG) == []


def test_fresh_clone_plans_nothing_over_copied_results(work, tmp_path):
    """A clone has new timestamps on every file and none of the git-ignored results/ and
    .snakemake/ (where Snakemake keeps the params, code and input checksums of each output).
    With both copied in, older than the clone's files, nothing is stale."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    # The test config is not ignored, so it is committed with the rest.
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=work, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(work), str(clone)], check=True)
    assert not (clone / "results").exists() and not (clone / ".snakemake").exists()

    copy_run(work / "results", clone / "results")
    copy_run(work / ".snakemake", clone / ".snakemake")
    day_ago = time.time() - 86400
    for path in (clone / "results").rglob("*"):
        os.utime(path, (day_ago, day_ago), follow_symlinks=False)

    assert plan(clone, CONFIG) == []
    assert plan(clone, CONFIG, profile="profiles/slurm") == []


def test_learning_rate_change_plans_that_solver_only(work, graph):
    config = yaml.safe_load((work / CONFIG).read_text())
    solver = mlp_solver(config)
    config["solvers"].setdefault(solver, {})["learning_rate"] = 0.0123
    write_config(work / CONFIG, config)

    planned = dry_run(work, CONFIG)
    expected = downstream(graph, jobs_of(graph, "train", solver=solver))
    assert sorted(p.job for p in planned) == sorted(expected)
    per_run = [p.job for p in planned if p.job.rule in PER_RUN_RULES]
    assert {j.rule for j in per_run} == {"train", "evaluate"}
    assert {j.wc["solver"] for j in per_run} == {solver}
    assert len(per_run) == 2 * len(jobs_of(graph, "train", solver=solver))
    trains = [p for p in planned if p.job.rule == "train"]
    assert all("params" in p.reason.lower() for p in trains), [p.reason for p in trains]


def test_prediction_step_change_reruns_evaluation_only(work, graph):
    # The prediction step is an evaluation setting: the same trained model is scored again, never retrained.
    config = yaml.safe_load((work / CONFIG).read_text())
    solver = mlp_solver(config)
    config["solvers"].setdefault(solver, {})["predict_step"] = "explicit"
    write_config(work / CONFIG, config)

    planned = dry_run(work, CONFIG)
    expected = downstream(graph, jobs_of(graph, "evaluate", solver=solver))
    assert sorted(p.job for p in planned) == sorted(expected)
    per_run = [p.job for p in planned if p.job.rule in PER_RUN_RULES]
    assert per_run and {j.rule for j in per_run} == {"evaluate"}
    assert {j.wc["solver"] for j in per_run} == {solver}


def test_training_code_change_plans_train_and_evaluate(work, graph):
    append_line(work / "src/jkonetstar/training.py", "# edited by test_rerun")
    planned = plan(work, CONFIG)
    assert planned == sorted(downstream(graph, jobs_of(graph, "train")))
    assert {j.rule for j in planned if j.rule in PER_RUN_RULES} == {"train", "evaluate"}
    assert len(jobs_of(graph, "train") & set(planned)) == len(jobs_of(graph, "train"))


def test_paper_figure_change_plans_the_figure_jobs_only(work, graph):
    # The paper's figures live in jkonetstar.figures, apart from the per-run pictures (jkonetstar.plots) that
    # every evaluate job draws: polishing a figure must not rerun the runs.
    append_line(work / "src/jkonetstar/figures.py", "# edited by test_rerun")
    planned = plan(work, CONFIG)
    assert planned and {j.rule for j in planned} <= {"figure", "prediction_figure", "rna_figure", "all"}
    assert sorted(j for j in planned if j.rule == "figure") == sorted(jobs_of(graph, "figure"))


def test_simulator_change_plans_everything_downstream_of_simulation(work, graph):
    append_line(work / "src/jkonetstar/simulate.py", "# edited by test_rerun")
    planned = plan(work, CONFIG)
    assert planned == sorted(downstream(graph, jobs_of(graph, "simulate")))
    assert {j.rule for j in planned} >= set(PER_RUN_RULES)


def incomplete_outputs(root: Path) -> set[str]:
    """Output paths that Snakemake marked as being written by a job that has not finished."""
    base = root / ".snakemake" / "incomplete"
    found = set()
    for marker in base.rglob("*"):
        if marker.is_file() and marker.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in marker.relative_to(base).parts)
            found.add(base64.urlsafe_b64decode(encoded).decode())
    return found


def test_interrupted_run_redoes_exactly_the_interrupted_jobs(work, graph):
    config = yaml.safe_load((work / CONFIG).read_text())
    solver = mlp_solver(config)
    config["solvers"].setdefault(solver, {})["learning_rate"] = 0.0321
    write_config(work / CONFIG, config)
    stale = downstream(graph, jobs_of(graph, "train", solver=solver))
    train_outputs = {f: p.job for p in graph if p.job.rule == "train" for f in p.outputs}
    logs = {p.job: [work / f for f in p.logs] for p in graph}

    started = time.time()
    proc = subprocess.Popen(
        snakemake_command(CONFIG, "--cores", "1"), cwd=work, env=snakemake_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        running: set[Job] = set()
        while time.monotonic() < deadline and proc.poll() is None and not running:
            marked = {train_outputs[f] for f in incomplete_outputs(work) if f in train_outputs}
            # Kill once the training script has opened its fresh log: midway, before any output.
            running = {job for job in marked if any(
                log.exists() and log.stat().st_mtime >= started - 1 and log.stat().st_size for log in logs[job]
            )}
            time.sleep(0.1)
        assert running, "no train job got going within 120 s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the job it runs: no cleanup
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"

    interrupted = {train_outputs[f] for f in incomplete_outputs(work) if f in train_outputs}
    assert interrupted == running
    for p in graph:
        if p.job in interrupted:
            assert [f for f in p.outputs if (work / f).exists()] == [], "an interrupted job left output behind"

    replanned = dry_run(work, CONFIG)
    assert sorted(p.job for p in replanned) == sorted(stale)
    reasons = {str(p.job): p.reason for p in replanned if p.job in interrupted}
    assert all(r.lower().startswith(("missing output", "incomplete")) for r in reasons.values()), reasons

    # The kill left Snakemake's lock behind; after --unlock the run picks up the interrupted job.
    run_snakemake(work, CONFIG, "--unlock")
    target = [f for p in graph if p.job in interrupted for f in p.outputs]
    run_snakemake(work, CONFIG, "--cores", "2", *target)
    assert plan(work, CONFIG) == sorted(stale - interrupted)

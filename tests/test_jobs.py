"""The workflow's jobs (jkonetstar.jobs) and the thin Snakemake adapters over them."""

import ast
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from snakemake_runs import ROOT, adapter_stage, stage_imports

from jkonetstar import figures, jobs

SCRIPTS = sorted((ROOT / "workflow" / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_a_short_adapter_of_one_job(script):
    # No logic in workflow/scripts: one call of jkonetstar.jobs maps the job's files and params to a stage.
    text = script.read_text()
    assert len(text.splitlines()) <= 40, f"{script.name}: {len(text.splitlines())} lines (at most 40)"
    tree = ast.parse(text)
    uses = [node for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "jobs"]
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and node.func in uses]
    assert len(uses) == len(calls) == 1, f"{script.name}: exactly one jobs.<...> call"
    assert calls[0].func.attr == "from_snakemake"
    assert adapter_stage(script) in jobs.__all__
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.For, ast.If))]


def test_the_jobs_module_loads_no_heavy_library():
    # The jobs import JAX, pandas and matplotlib inside the stage that needs them (JAX after its cache settings).
    code = ("import sys; sys.path.insert(0, 'src'); import jkonetstar.jobs; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'pandas', 'matplotlib', 'ot', 'sklearn'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_stage_imports_follow_the_stage_only():
    assert not any(m.startswith(("matplotlib", "jax")) for m in stage_imports("table"))
    assert "jkonetstar.plots" in stage_imports("evaluate")  # through its picture helpers
    with pytest.raises(ValueError, match="no stage function 'nope'"):
        stage_imports("nope")


@pytest.mark.parametrize("rows", [
    [dict(epoch=1, loss=0.1, seconds=1e-5), dict(epoch=2, loss=math.nan, seconds=3.0, w1=0.5, eval_seconds=0.2)],
    [dict(epoch=1, loss=np.float32(0.1), selected=True), dict(epoch=2, loss=np.float32(0.3), selected=None, it=3)],
    [dict(epoch=1, loss=np.float64(0.1), it=np.int64(4)), dict(epoch=2, loss=1.0, it=5)],
])
def test_history_csv_is_written_as_pandas_writes_it(rows, tmp_path):
    jobs._write_csv(tmp_path / "ours.csv", rows)
    pd.DataFrame(rows).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "pandas.csv").read_text()


def test_published_results_come_from_the_data_file():
    rows = figures.published("rna")
    assert rows[0] == {"algorithm": "TrajectoryNet", "emd_mean": 0.848, "emd_std": rows[0]["emd_std"],
                       "source": rows[0]["source"]} and math.isnan(rows[0]["emd_std"])
    assert [(r["emd_mean"], r["emd_std"]) for r in rows if r["algorithm"] == "JKOnet* (time-varying V)"] == [
        (0.623, 0.04), (0.624, 0.007)]
    with pytest.raises(ValueError, match="no published results of experiment 'exp9'"):
        figures.published("exp9")


def test_unknown_experiment_caption_is_an_error():
    with pytest.raises(ValueError, match="unknown experiment 'exp9'"):
        figures.experiment_caption("exp9", grid={"seeds": [0]}, solvers={}, data={"n_steps": 1, "dt": 0.1,
                                   "test_ratio": 0.5, "split_by": "trajectory"}, extra={}, protocol="", steps={})

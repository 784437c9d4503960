"""Static checks of the per-rule conda environments in envs/.

Conda channels cannot be reached from CI, so the environments are never built there; these tests
make sure that what a user builds with `--sdm conda` matches what CI tested (requirements.lock).
"""

from __future__ import annotations

import ast
import copy
import re
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from snakemake_runs import parse_rules, third_party_imports

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = ROOT / "envs"
ENV_FILES = sorted(ENV_DIR.glob("*.yaml"))
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
REQUIRED_ENVS = {"simulate", "ot", "train", "plot"}
PYTHON_PIN = "3.11"
# conda-forge names whose PyPI (lock) name differs.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "python-tzdata": "tzdata"}
# Installers: pinned exactly, but not part of the lock.
NOT_IN_LOCK = {"python", "pip"}


def read_lock(path: Path = ROOT / "requirements.lock") -> dict[str, str]:
    """Returns {canonical name: version} for every `name==version` line of a uv/pip lock file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def env_pins(env: dict) -> tuple[dict[str, str], list[str]]:
    """Returns ({lock name: pinned version}, problems) for one parsed environment file.

    Conda entries must read `name=version`, pip entries `name==version`; anything looser, a
    local path or an editable install is a problem.
    """
    pins, problems = {}, []
    for entry in env.get("dependencies") or []:
        if isinstance(entry, dict):
            if set(entry) != {"pip"}:
                problems.append(f"unexpected mapping in dependencies: {entry!r}")
                continue
            for spec in entry["pip"] or []:
                match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", str(spec))
                if not match:
                    problems.append(f"pip entry {spec!r} is not an exact `name==version` pin")
                    continue
                pins[canonicalize_name(match[1])] = match[2]
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)=([0-9][A-Za-z0-9.+!_-]*)", str(entry))
        if not match:
            problems.append(f"conda entry {entry!r} is not an exact `name=version` pin")
            continue
        name = CONDA_TO_PYPI.get(match[1], match[1])
        pins[canonicalize_name(name)] = match[2]
    return pins, problems


def check_env(env: dict, lock: dict[str, str]) -> list[str]:
    """Lists every way in which one parsed environment disagrees with the conventions and the lock."""
    problems = []
    channels = env.get("channels") or []
    if "defaults" in channels:
        problems.append("channel `defaults` is declared")
    if channels[:1] != ["conda-forge"] or "nodefaults" not in channels:
        problems.append(f"channels must be conda-forge first plus nodefaults, got {channels}")
    pins, entry_problems = env_pins(env)
    problems += entry_problems
    if pins.get("python") != PYTHON_PIN:
        problems.append(f"python must be pinned to ={PYTHON_PIN}, got {pins.get('python')!r}")
    if any(isinstance(e, dict) for e in env.get("dependencies") or []) and "pip" not in pins:
        problems.append("a pip: section needs `pip` pinned among the conda dependencies")
    for name, version in sorted(pins.items()):
        if name in NOT_IN_LOCK:
            continue
        if name not in lock:
            problems.append(f"{name} is not in requirements.lock")
        elif lock[name] != version:
            problems.append(f"{name}: env pins {version}, requirements.lock has {lock[name]}")
    return problems


def missing_dependencies(pins: dict[str, str]) -> list[str]:
    """Lists the requirements of pinned packages that the environment does not pin itself.

    Dependencies are read from the installed distributions of the running (lock-built)
    interpreter, so a package whose new version needs something new is caught here.
    """
    missing = []
    for name in sorted(set(pins) - NOT_IN_LOCK):
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            missing.append(f"{name} is not installed in the test environment")
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) not in pins:
                missing.append(f"{name} needs {req.name}, which is not pinned")
    return missing


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return read_lock()


def load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), f"{path}: not a YAML mapping"
    return env


def test_required_environments_exist():
    assert REQUIRED_ENVS <= {p.stem for p in ENV_FILES}, f"envs/ holds {[p.name for p in ENV_FILES]}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_agrees_with_lock(path, lock):
    assert check_env(load_env(path), lock) == []


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_its_whole_dependency_closure(path):
    pins, _ = env_pins(load_env(path))
    assert missing_dependencies(pins) == []


def test_checker_catches_drift(lock):
    env = load_env(ENV_DIR / "train.yaml")
    assert check_env(env, lock) == []

    drifted = copy.deepcopy(env)
    pip = next(e for e in drifted["dependencies"] if isinstance(e, dict))["pip"]
    pip[pip.index(f"jax=={lock['jax']}")] = "jax==0.0.1"
    assert check_env(drifted, lock) == [f"jax: env pins 0.0.1, requirements.lock has {lock['jax']}"]

    drifted = copy.deepcopy(env)
    conda = drifted["dependencies"]
    conda[conda.index(f"numpy={lock['numpy']}")] = "numpy=1.0.0"
    assert check_env(drifted, lock) == [f"numpy: env pins 1.0.0, requirements.lock has {lock['numpy']}"]

    loose = copy.deepcopy(env)
    loose["dependencies"][loose["dependencies"].index(f"numpy={lock['numpy']}")] = "numpy>=2"
    assert check_env(loose, lock) == ["conda entry 'numpy>=2' is not an exact `name=version` pin"]

    editable = copy.deepcopy(env)
    next(e for e in editable["dependencies"] if isinstance(e, dict))["pip"].append("-e ../")
    assert check_env(editable, lock) == ["pip entry '-e ../' is not an exact `name==version` pin"]

    defaults = copy.deepcopy(env)
    defaults["channels"] = ["conda-forge", "defaults"]
    assert "channel `defaults` is declared" in check_env(defaults, lock)

    unpinned_dep = env_pins(env)[0]
    del unpinned_dep["jaxlib"]
    assert "jax needs jaxlib, which is not pinned" in missing_dependencies(unpinned_dep)


def test_checker_reads_the_lock_format(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nott-jax==0.6.0\n    # via jkonetstar\nPyYAML==6.0.4\n")
    assert read_lock(lock) == {"ott-jax": "0.6.0", "pyyaml": "6.0.4"}


# --- rules -> environments -------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules() -> dict[str, dict[str, str | None]]:
    assert RULE_FILES, "no workflow/rules/*.smk found"
    found = {}
    for path in RULE_FILES:
        found.update(parse_rules(path))
    return found


def test_parse_rules_reads_directives(tmp_path):
    rule_file = tmp_path / "rules" / "x.smk"
    rule_file.parent.mkdir()
    rule_file.write_text(
        'rule a:\n    input: "x"\n    conda:\n        "../envs/ot.yaml"\n    script: "../s/a.py"\n\n'
        "localrules: b\n\nrule b:\n    shell: 'true'\n"
    )
    assert parse_rules(rule_file) == {
        "a": {"conda": str(tmp_path / "envs" / "ot.yaml"), "script": str(tmp_path / "s" / "a.py"), "action": "script"},
        "b": {"conda": None, "script": None, "action": "shell"},
    }


def test_every_rule_has_an_existing_conda_env(rules):
    env_files = {str(p.resolve()) for p in ENV_FILES}
    bad = {name: r["conda"] for name, r in rules.items() if r["action"] and r["conda"] not in env_files}
    assert bad == {}, f"rules whose conda: is missing or not a file in envs/: {bad}"


def test_every_env_is_used_by_a_rule(rules):
    used = {r["conda"] for r in rules.values()}
    assert [p.name for p in ENV_FILES if str(p.resolve()) not in used] == []


def test_env_of_each_script_provides_its_imports(rules):
    module_to_dists = packages_distributions()
    problems = []
    for name, rule in sorted(rules.items()):
        if not rule["script"] or not rule["conda"] or not Path(rule["conda"]).is_file():
            continue
        pins, _ = env_pins(load_env(Path(rule["conda"])))
        for module in sorted(third_party_imports(Path(rule["script"]))):
            dists = {canonicalize_name(d) for d in module_to_dists.get(module, [])}
            if not dists & set(pins):
                problems.append(f"rule {name}: imports {module} ({sorted(dists) or 'unknown'}), not in {Path(rule['conda']).name}")
    assert not problems, "\n".join(problems)


def test_import_follower_reads_through_the_package(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import sys, json\nfrom jkonetstar import simulate\nfrom jkonetstar.io import save_npz\nimport yaml\n")
    assert third_party_imports(script) == {"jax", "numpy", "yaml"}


def test_scripts_import_the_library_from_their_checkout(rules):
    """Conda envs do not install jkonetstar, so each script puts the checkout's src/ on sys.path
    before its first jkonetstar import (and in the project venv the same checkout wins)."""
    problems = []
    for script in sorted({Path(r["script"]) for r in rules.values() if r["script"]}):
        tree = ast.parse(script.read_text())
        first = next((node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                      and "jkonetstar" in ast.unparse(node)), None)
        if first is None:
            continue
        before = [ast.unparse(node) for node in tree.body if node.lineno < first]
        if not any("sys.path" in text and "src" in text for text in before):
            problems.append(f"{script.relative_to(ROOT)}: imports jkonetstar without adding src/ to sys.path first")
    assert not problems, "\n".join(problems)

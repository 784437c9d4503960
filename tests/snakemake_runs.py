"""Helpers for the workflow-level tests: throw-away copies of the repository, Snakemake runs
and their planned jobs, and static reading of the rules and of their scripts' imports.

Tests never touch the developer's results/: every run happens in a copy made by `copy_checkout`
(the files git would commit) or `copy_run` (a copy of an executed copy, results included).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / ".test" / "config" / "config.yaml"
PER_RUN_RULES = ("simulate", "couplings", "train", "evaluate")
_SKIP_DIRS = {".git", ".venv", "results", ".snakemake", ".pytest_cache", "__pycache__", "logs"}


class Job(NamedTuple):
    """One planned job: its rule and wildcards (sorted name/value pairs)."""

    rule: str
    wildcards: tuple[tuple[str, str], ...]

    @property
    def wc(self) -> dict[str, str]:
        return dict(self.wildcards)

    def __str__(self) -> str:
        return f"{self.rule}[{', '.join(f'{k}={v}' for k, v in self.wildcards)}]"


class PlannedJob(NamedTuple):
    """A job of a dry run with the files it reads and writes and Snakemake's reason."""

    job: Job
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    logs: tuple[str, ...]
    reason: str


def checkout_files(root: Path = ROOT) -> list[Path]:
    """Relative paths of the files git would commit (tracked plus untracked, not ignored)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root, check=True, capture_output=True,
        ).stdout.decode()
        return [Path(p) for p in listed.split("\0") if p and (root / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
            files += [Path(dirpath, f).relative_to(root) for f in filenames]
        return files


def copy_checkout(dest: Path, root: Path = ROOT) -> Path:
    """Copies the repository's source files (no .venv, results/, .snakemake/) to ``dest``."""
    for rel in checkout_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def copy_run(src: Path, dest: Path) -> Path:
    """Copies an executed copy, results and .snakemake metadata included, keeping timestamps."""
    shutil.copytree(
        src, dest, symlinks=True,
        ignore=shutil.ignore_patterns("conda", "conda-archive", "singularity", "locks", "slurm_logs"),
    )
    return dest


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_dataset_config(base: Path = TINY_CONFIG) -> dict:
    """The tiny test config cut down to its first potential (all its solvers kept)."""
    config = yaml.safe_load(base.read_text())
    for grid in config["experiments"].values():
        grid["potentials"] = grid["potentials"][:1]
    return config


def snakemake_command(config: Path, *args: str, profile: str = "profiles/default") -> list[str]:
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", "workflow/Snakefile",
        "--configfile", str(config),
        "--workflow-profile", profile,
        *args,
    ]


def run_snakemake(cwd: Path, config: Path, *args: str, profile: str = "profiles/default",
                  timeout: float = 600) -> str:
    """Runs Snakemake in ``cwd`` and returns its combined output; fails the test with it on error."""
    result = subprocess.run(
        snakemake_command(config, *args, profile=profile), cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout, env=snakemake_env(),
    )
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}")
    return result.stdout


def snakemake_env() -> dict[str, str]:
    """The test's environment with the interpreter's bin/ first (sbatch jobs re-run it)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


_HEADER = re.compile(r"^(?P<indent>\s*)(?:local)?rule (?P<rule>[\w-]+):\s*$")
_FIELD = re.compile(r"^\s+(?P<key>\w+): (?P<value>.*)$")


def parse_dry_run(output: str) -> list[PlannedJob]:
    """Reads the jobs of `snakemake --dry-run` output (group jobs included)."""
    jobs, current = [], None

    def close():
        if current is not None:
            fields = current["fields"]
            wildcards = tuple(sorted(
                tuple(part.split("=", 1)) for part in fields.get("wildcards", "").split(", ") if "=" in part
            ))
            split = lambda key: tuple(p for p in fields.get(key, "").split(", ") if p)  # noqa: E731
            jobs.append(PlannedJob(Job(current["rule"], wildcards), split("input"), split("output"),
                                   split("log"), fields.get("reason", "")))

    for line in output.splitlines():
        header = _HEADER.match(line)
        if header:
            close()
            current = {"rule": header["rule"], "indent": len(header["indent"]), "fields": {}}
            continue
        field = _FIELD.match(line) if current is not None else None
        if field and len(line) - len(line.lstrip()) > current["indent"]:
            current["fields"].setdefault(field["key"], field["value"])
        elif current is not None:
            close()
            current = None
    close()
    return jobs


def dry_run(cwd: Path, config: Path, *args: str, profile: str = "profiles/default") -> list[PlannedJob]:
    """The jobs a run would execute now, as Snakemake plans them."""
    output = run_snakemake(cwd, config, "--dry-run", *args, profile=profile)
    planned = parse_dry_run(output)
    if not planned:
        assert "Nothing to be done" in output, f"no jobs parsed from a dry run that planned some:\n{output[-4000:]}"
    return planned


def plan(cwd: Path, config: Path, *args: str, profile: str = "profiles/default") -> list[Job]:
    """The sorted list of planned jobs (rule + wildcards) of a dry run."""
    return sorted(p.job for p in dry_run(cwd, config, *args, profile=profile))


def downstream(graph: list[PlannedJob], start: set[Job]) -> set[Job]:
    """``start`` and every job that reads, directly or not, a file written by one of them."""
    consumers: dict[str, set[Job]] = {}
    producer_outputs = {p.job: p.outputs for p in graph}
    for p in graph:
        for f in p.inputs:
            consumers.setdefault(f, set()).add(p.job)
    found, todo = set(start), list(start)
    while todo:
        for f in producer_outputs[todo.pop()]:
            for job in consumers.get(f, ()):
                if job not in found:
                    found.add(job)
                    todo.append(job)
    return found


# --- reading the workflow's rules and the imports of its scripts ----------------------------------

RULE_HEADER = re.compile(r"^(?P<indent>[ \t]*)(?:rule|checkpoint)\s+(?P<name>\w+)\s*:", re.M)
STRING_DIRECTIVE = r"^[ \t]+{}:\s*(?:\n[ \t]+)?(?P<q>['\"])(?P<value>[^'\"]+)(?P=q)"


def parse_rules(path: Path) -> dict[str, dict[str, str | None]]:
    """Returns {rule name: {"conda": path, "script": path, "action": directive}} for one .smk file.

    Values are None where the rule has no such directive (rules without an action only name
    targets). Paths are resolved as Snakemake does: relative to the directory of the file
    declaring the rule.
    """
    text = path.read_text()
    headers = list(RULE_HEADER.finditer(text))
    rules = {}
    for header, following in zip(headers, headers[1:] + [None]):
        body = text[header.end() : following.start() if following else len(text)]
        indent = len(header["indent"])
        end = re.search(rf"^[ \t]{{0,{indent}}}\S", body, re.M)  # first line back at the rule's indent
        body = body[: end.start()] if end else body
        found = {}
        for key in ("conda", "script"):
            match = re.search(STRING_DIRECTIVE.format(key), body, re.M)
            found[key] = str((path.parent / match["value"]).resolve()) if match else None
        if re.search(r"^[ \t]+conda:", body, re.M) and found["conda"] is None:
            found["conda"] = "<not a string literal>"
        action = re.search(r"^[ \t]+(script|shell|run|wrapper|notebook|template_engine):", body, re.M)
        found["action"] = action[1] if action else None
        rules[header["name"]] = found
    return rules


def imported_modules(path: Path) -> set[str]:
    """Returns the absolute module names imported anywhere in one Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = None
    if ROOT / "src" in path.parents:
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
        package = package.removesuffix(".__init__")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


JOBS = ROOT / "src" / "jkonetstar" / "jobs.py"


def adapter_stage(script: Path) -> str | None:
    """The stage a script adapter runs: the name in its ``jobs.from_snakemake(snakemake, "<stage>", ...)``."""
    for node in ast.walk(ast.parse(script.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_snakemake"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
            return node.args[1].value
    return None


def stage_imports(stage: str, path: Path = JOBS) -> set[str]:
    """The modules one stage of jkonetstar.jobs imports: the module's top-level imports, those inside the stage
    function and inside the module's functions it calls (the jobs import their heavy libraries lazily)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    if stage not in functions:
        raise ValueError(f"{path}: no stage function {stage!r}")
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    names, todo, done = _imports_of(top), [stage], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        function = functions[name]
        arguments = {a.arg for a in [*function.args.args, *function.args.kwonlyargs]}  # e.g. an output path `train`
        names |= _imports_of(function)
        todo += [n.id for n in ast.walk(function) if isinstance(n, ast.Name) and n.id in functions
                 and n.id not in arguments]
    return names


def _imports_of(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a script needs, following imports through src/jkonetstar (through
    jkonetstar.jobs only along the stage the script runs, :func:`stage_imports`)."""
    stage = adapter_stage(script)
    seen, todo, needed = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        modules = stage_imports(stage) if stage and path == JOBS else imported_modules(path)
        for module in modules:
            top = module.split(".")[0]
            if top == "jkonetstar":
                parts = module.split(".")
                for i in range(1, len(parts) + 1):
                    base = ROOT / "src" / Path(*parts[:i])
                    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                        if candidate.is_file():
                            todo.append(candidate)
            elif top not in sys.stdlib_module_names and top not in {"snakemake", "__future__"}:
                needed.add(top)
    return needed


def library_files_imported_by(script: Path) -> set[Path]:
    """The src/jkonetstar files a script imports itself (not through other library modules).

    `import jkonetstar` and `from jkonetstar import <name defined in __init__>` count as
    importing __init__.py; `from jkonetstar import io` only as importing io.py.
    """
    src = ROOT / "src"

    def module_file(name: str) -> Path | None:
        base = src / Path(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    files = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if module_file(n) else node.module for n in names]
        else:
            continue
        files.update(f for n in names if n.split(".")[0] == "jkonetstar" and (f := module_file(n)))
    return files

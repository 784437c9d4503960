"""Command line: ``jkonetstar simulate|read|couple|train|evaluate|run ...``, the workflow's stages by hand.

Every subcommand runs the same function the Snakemake workflow runs (:mod:`jkonetstar.jobs`), with the
arguments the workflow passes, and writes the same files under the same names. Hyper-parameter flags, their
types, help texts and defaults come from the workflow's config schema (``workflow/schemas/config.schema.yaml``,
``$defs/jkonet-star`` and ``$defs/jkonet``), so the command line and the workflow cannot drift apart; the
methods and the settings each takes come from the registry (:mod:`jkonetstar.methods`).

Example, one synthetic run and one run on a user data file::

    jkonetstar simulate --potential wavy_plateau --dir run
    jkonetstar couple --dir run
    jkonetstar train --method jkonet-star-potential --epochs 100 --dir run
    jkonetstar evaluate --dir run
    jkonetstar run --data cells.npz --method jkonet-star-time-potential --out cells_run
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path

from jkonetstar import methods

__all__ = ["main", "schema", "family_defaults", "SCHEMA_PATH"]

_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = _ROOT / "workflow/schemas/config.schema.yaml"
"""The workflow's config schema: the hyper-parameters' types, help texts and defaults."""
CONFIG_PATH = _ROOT / "config/config.yaml"
"""The workflow's default config: the data settings the schema requires without a default (dt, n_steps, ...)."""

FAMILIES = methods.FAMILIES
_UNSET = object()  # a flag not given (where None is a value)
HP_SOURCES = {family: f"$defs/{family}" for family in FAMILIES}

# Output file names of the workflow's data, coupled-data and run directories (workflow/rules/*.smk).
FILES = {
    "population": "population.npz", "settings": "settings.json",
    "independent_population": "independent_population.npz", "independent_settings": "independent_settings.json",
    "population_summary": "population.json",
    "train": "train_couplings.npz", "test": "test_population.npz", "train_population": "train_population.npz",
    "mixtures": "density.npz", "couplings_summary": "couplings.json",
    "model": "model.npz", "history": "history.csv", "fit": "fit.json",
    "metrics": "metrics.json", "levels": "levels.png", "predictions": "predictions.png",
}


# ---- the schema ----


@functools.cache
def schema() -> dict:
    """The workflow's config schema (parsed once)."""
    import yaml

    if not SCHEMA_PATH.is_file():
        raise ValueError(f"config schema {SCHEMA_PATH} not found: the command line reads its hyper-parameters from "
                         "the repository's workflow/ (run it from a checkout, e.g. pip install -e .)")
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


@functools.cache
def _default_config() -> dict:
    import yaml

    try:
        with open(CONFIG_PATH) as f:
            return yaml.safe_load(f) or {}
    except OSError:
        return {}


def fill_defaults(node: dict, instance: dict) -> dict:
    """Fills ``instance`` with the schema ``node``'s property defaults, recursively (as the workflow's
    ``snakemake.utils.validate(..., set_default=True)`` does: an object default is filled in turn)."""
    for name, sub in node.get("properties", {}).items():
        if "default" in sub and name not in instance:
            instance[name] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(name), dict) and "properties" in sub:
            fill_defaults(sub, instance[name])
    return instance


def family_defaults(family: str, overrides: dict | None = None) -> dict:
    """A method family's hyper-parameters as the workflow gives them to a job: the schema defaults of
    ``$defs/<family>`` under ``overrides``."""
    return fill_defaults(schema()["$defs"][family], copy.deepcopy(dict(overrides or {})))


def _section_default(section: str, key: str, fallback):
    """A synthetic-data setting: the schema's default, else config/config.yaml's value, else ``fallback``."""
    sub = schema()["properties"][section]["properties"][key]
    if "default" in sub:
        return sub["default"]
    return _default_config().get(section, {}).get(key, fallback)


def _real_default(*path):
    node = schema()["$defs"]["real_dataset"]
    for key in path:
        node = node["properties"][key]
    return node.get("default")


def _sorted(value):
    """``value`` with every mapping's keys sorted (the workflow's ``settings()``: job params in a fixed order)."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


# ---- hyper-parameter flags ----


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _types(sub: dict) -> list[str]:
    kind = sub.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def _scalar(kind: list[str], where: str):
    def convert(text: str):
        if "null" in kind and text.lower() in ("none", "null"):
            return None
        try:
            if "integer" in kind:
                return int(text)
            if "number" in kind:
                return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{where}: not a {'/'.join(k for k in kind if k != 'null')}: {text!r}")
        if "boolean" in kind:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"{where}: not a boolean: {text!r}")
        return text

    convert.__name__ = "/".join(kind) or "value"
    return convert


def _key_values(sub: dict, flag: str):
    """Parser of one ``KEY=VALUE`` item of a nested-object flag (``--features degree=2``)."""
    properties = sub["properties"]

    def convert(text: str):
        key, sep, value = text.partition("=")
        if not sep or key not in properties:
            raise argparse.ArgumentTypeError(f"{flag} takes KEY=VALUE with KEY one of {list(properties)}, got {text!r}")
        return key, _scalar(_types(properties[key]), f"{flag} {key}")(value)

    convert.__name__ = "KEY=VALUE"
    return convert


def _method_groups() -> dict[str, list[str]]:
    groups = {"JKOnet* MLP solvers": [], "JKOnet* linear solvers": [], "JKOnet baselines": []}
    for name, spec in methods.METHODS.items():
        if spec.family == "jkonet":
            groups["JKOnet baselines"].append(name)
        else:
            groups["JKOnet* linear solvers" if spec.closed_form else "JKOnet* MLP solvers"].append(name)
    return groups


def _applies_to(names: list[str]) -> str:
    if set(names) == set(methods.METHODS):
        return "all methods"
    parts = []
    for group, members in _method_groups().items():
        chosen = [m for m in members if m in names]
        if chosen and len(chosen) == len(members):
            parts.append(group)
        else:
            parts += chosen
    return ", ".join(parts)


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return "none" if value is None else str(value)


def method_settings(spec, stage: str) -> tuple[str, ...]:
    """The hyper-parameters method ``spec`` takes at ``stage`` (train: its training options; evaluate: tau and
    its evaluation options; run: both)."""
    if stage == "train":
        return tuple(spec.options)
    if stage == "evaluate":
        return ("tau", *spec.evaluation_options)
    return tuple(dict.fromkeys((*spec.options, *spec.evaluation_options)))


def _add_hp_flags(parser: argparse.ArgumentParser, stage: str) -> None:
    """One flag per schema hyper-parameter some method takes at ``stage``: ``dest="hp_<name>"``, absent unless given."""
    defs = schema()["$defs"]
    users: dict[str, list[str]] = {}
    for name, spec in methods.METHODS.items():
        for option in method_settings(spec, stage):
            users.setdefault(option, []).append(name)
    group = parser.add_argument_group(
        "hyper-parameters (workflow/schemas/config.schema.yaml $defs/jkonet-star and $defs/jkonet; defaults "
        "from the schema; a flag the chosen method does not take is refused)")
    names = list(dict.fromkeys(n for family in FAMILIES for n in defs[family]["properties"]))
    for name in names:
        if name not in users:
            continue
        subs = {family: defs[family]["properties"][name] for family in FAMILIES
                if name in defs[family]["properties"]
                and any(methods.METHODS[m].family == family for m in users[name])}
        first = next(iter(subs.values()))
        described = {family: sub["description"] for family, sub in subs.items() if "description" in sub}
        description = " ".join(text if len(described) == len(subs) and len(set(described.values())) == 1
                               else f"({family}) {text}" for family, text in described.items())
        if len(described) == len(subs) and len(set(described.values())) == 1:
            description = next(iter(described.values()))
        defaults = {family: _show(fill_defaults(sub, copy.deepcopy(sub["default"])) if isinstance(
                        sub["default"], dict) else sub["default"]) if "default" in sub else "none (the method's own)"
                    for family, sub in subs.items()}
        shown = (next(iter(defaults.values())) if len(set(defaults.values())) == 1
                 else "; ".join(f"{value} ({family})" for family, value in defaults.items()))
        text = f"{description} [default: {shown}; applies to: {_applies_to(users[name])}]".strip()
        kwargs: dict = {"dest": f"hp_{name}", "default": argparse.SUPPRESS, "help": text, "metavar": name.upper()}
        kind = _types(first)
        enum = list(dict.fromkeys(v for sub in subs.values() for v in sub.get("enum", [])))
        if enum:
            kwargs["choices"] = enum
            del kwargs["metavar"]
        elif "array" in kind:
            kwargs.update(nargs="+", type=_scalar(_types(first["items"]), _flag(name)))
        elif "object" in kind:
            kwargs.update(nargs="+", type=_key_values(first, _flag(name)), metavar="KEY=VALUE")
            kwargs["help"] += f" (keys: {', '.join(first['properties'])})"
        elif "boolean" in kind:
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        else:
            kwargs["type"] = _scalar(kind, _flag(name))
        group.add_argument(_flag(name), **kwargs)


def _given_hp(args) -> dict:
    given = {key[3:]: value for key, value in vars(args).items() if key.startswith("hp_")}
    if isinstance(given.get("features"), list):
        given["features"] = dict(given["features"])
    return given


def real_data_defaults(spec, stage: str) -> dict:
    """The read-data defaults of the workflow's ``datasets.<name>.training`` (schema: the forward-Euler pair
    gradient_at source, predict_step explicit) that the method takes at ``stage`` (a JKOnet baseline keeps its
    own prediction step, as in the workflow)."""
    training = schema()["$defs"]["real_dataset"]["properties"]["training"]["properties"]
    allowed = method_settings(spec, stage)
    return {name: sub["default"] for name, sub in training.items() if "default" in sub and name in allowed
            and not (spec.family == "jkonet" and name in methods.PREDICT_OPTIONS)}


def method_hp(spec, given: dict, stage: str, real: bool = False) -> dict:
    """The method's full hyper-parameters (schema defaults of its family under the ``given`` flags; on read
    data, ``real``, the workflow's read-data defaults between them), checked: a flag the method does not take,
    or a value the schema refuses, is a ValueError naming the flag."""
    import jsonschema

    allowed = method_settings(spec, stage)
    for name in given:
        if name not in allowed and stage == "train" and name in spec.evaluation_options:
            raise ValueError(f"{_flag(name)} is an evaluation setting of method {spec.name!r}: give it to evaluate "
                             "(or run), not train")
        if name not in allowed:
            raise ValueError(f"{_flag(name)} does not apply to method {spec.name!r} at {stage} (its settings: "
                             f"{' '.join(_flag(a) for a in allowed)})")
    hp = family_defaults(spec.family, {**(real_data_defaults(spec, stage) if real else {}), **given})
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(
        schema()["$defs"][spec.family]).iter_errors(hp))
    if error is not None:
        path = list(error.absolute_path)
        flag = " ".join([_flag(str(path[0]))] + [str(p) for p in path[1:]]) if path else "hyper-parameters"
        raise ValueError(f"invalid {flag} for method {spec.name!r}: {error.message}")
    return hp


def training_hp(spec, hp: dict) -> dict:
    """What the workflow's train job receives (``solver_hp``): a JKOnet* solver's prediction settings left out."""
    if spec.family == "jkonet":
        return _sorted(hp)
    return _sorted({k: v for k, v in hp.items() if k not in methods.PREDICT_OPTIONS})


def predict_options(spec, hp: dict) -> dict:
    """What the workflow's evaluate job receives as ``predict_options`` (common.smk ``predict_options``)."""
    if spec.family == "jkonet":
        return {"step": hp["predict_step"], "inner_steps": hp["inner_steps"],
                "inner_learning_rate": hp["inner_learning_rate"]}
    return _sorted({k: hp[k] for k in methods.PREDICT_OPTIONS if k in hp})


# ---- the parser ----


class _Wrapping(argparse.HelpFormatter):
    """Help wrapped at spaces only, so that method names (jkonet-star-potential) stay whole."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _paths(parser, *names: str, inputs: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group("files (default: the workflow's file name in --dir)")
    group.add_argument("--dir", default=".", type=Path,
                       help="directory of the stage's files, the workflow's names (default: the current directory)")
    for name in names:
        role = "input" if name in inputs else "output"
        group.add_argument(_flag(name), type=Path, default=None, help=f"{role} (default: DIR/{FILES[name]})")


def _data_flags(parser) -> None:
    real = schema()["$defs"]["real_dataset"]["properties"]
    group = parser.add_argument_group("user data (workflow: datasets.<name>.*)")
    group.add_argument("--test-data", type=Path, default=None, help=real["test_path"]["description"])
    group.add_argument("--time-column", default=_real_default("time_column"), help=real["time_column"]["description"])
    group.add_argument("--particle-column", default=_real_default("particle_column"),
                       help=real["particle_column"]["description"])
    group.add_argument("--n-pcs", type=int, default=_real_default("n_pcs"), help=real["n_pcs"]["description"])
    group.add_argument("--dataset", default=None, help="the dataset's name in its files (default: the file's stem)")
    for name in _optional_source_keys():  # .h5ad settings, once the schema (and so the workflow) has them
        sub = real[name]
        kwargs = ({"action": argparse.BooleanOptionalAction} if "boolean" in _types(sub)
                  else {"type": _scalar(_types(sub), _flag(name)), "metavar": name.upper()})
        group.add_argument(_flag(name), dest=f"source_{name}", default=sub.get("default"),
                           help=f"{sub.get('description', '')} (default: {_show(sub.get('default'))})", **kwargs)


OPTIONAL_SOURCE_KEYS = ("time_key", "representation", "standardize", "pair_key")
"""Reading settings of jkonetstar.data.load_population beyond the five every dataset has (.h5ad files)."""


def _optional_source_keys() -> list[str]:
    """Those the schema's real_dataset section declares: the workflow passes them to its read job."""
    return [k for k in OPTIONAL_SOURCE_KEYS if k in schema()["$defs"]["real_dataset"]["properties"]]


def _simulation_flags(parser, required: bool) -> None:
    defs, data = schema()["$defs"], schema()["properties"]["data"]["properties"]
    group = parser.add_argument_group("synthetic population (workflow: experiments.* and data.*)")
    group.add_argument("--potential", required=required, choices=defs["potential"]["enum"], metavar="POTENTIAL",
                       help=f"true potential V, one of {', '.join(defs['potential']['enum'])}")
    group.add_argument("--interaction", default="none", choices=defs["interaction"]["enum"], metavar="INTERACTION",
                       help="true interaction W (a potential's name, or none)")
    group.add_argument("--beta", type=float, default=0.0, help="diffusion coefficient (temperature)")
    group.add_argument("--n-particles", type=int, default=1000, help="particles per snapshot")
    group.add_argument("--dim", type=int, default=2)
    group.add_argument("--dt", type=float, default=_section_default("data", "dt", 0.01), help=data["dt"]["description"])
    group.add_argument("--n-steps", type=int, default=_section_default("data", "n_steps", 5),
                       help=data["n_steps"]["description"])


def _couple_flags(parser) -> None:
    props = schema()["properties"]
    data, cpl, dens = (props[s]["properties"] for s in ("data", "couplings", "density"))
    real = schema()["$defs"]["real_dataset"]["properties"]
    synthetic_ratio = _section_default("data", "test_ratio", 0.5)
    synthetic_block = _section_default("couplings", "block_size", 1000)
    group = parser.add_argument_group(
        "split, couplings and densities (workflow: data.*, couplings.*, density.* for synthetic populations; "
        "datasets.<name>.* for read data; defaults by data kind)")
    # No argparse choices: jkonetstar.couplings.check_pairing refuses a bad name with the workflow's message
    # (e.g. the former 'unpaired').
    group.add_argument("--pairing", metavar="{" + ",".join(schema()["$defs"]["pairing"]["enum"]) + "}", default=None,
                       help=f"how rows of consecutive snapshots relate (default: paired for a simulated population; "
                            f"read data: {real['pairing']['description']})")
    group.add_argument("--test-ratio", type=float, default=None,
                       help=f"{data['test_ratio']['description']} (default: {synthetic_ratio} synthetic, "
                            f"{_real_default('test_ratio')} read data)")
    group.add_argument("--split-by", choices=data["split_by"]["enum"], default=None,
                       help=f"{data['split_by']['description']} Synthetic only (default: "
                            f"{_section_default('data', 'split_by', 'trajectory')})")
    group.add_argument("--ot-method", choices=cpl["method"]["enum"], default=None,
                       help=f"{cpl['method']['description']} (default: "
                            f"{_section_default('couplings', 'method', 'exact')})")
    group.add_argument("--ot-epsilon", type=float, default=None, help=cpl["epsilon"]["description"])
    group.add_argument("--block-size", type=_scalar(["integer", "null"], "--block-size"), default=_UNSET,
                       help=f"{cpl['block_size']['description']} (default: {synthetic_block} synthetic, "
                            f"{_show(_real_default('couplings', 'block_size'))} read data)")
    for name in ("sinkhorn_threshold", "sinkhorn_max_iterations"):
        group.add_argument(_flag(name), type=_scalar(_types(cpl[name]), _flag(name)), default=None,
                           help=f"{cpl[name]['description']} (default: {cpl[name]['default']})")
    group.add_argument("--sparsify-relax", action=argparse.BooleanOptionalAction, default=None,
                       help=f"{cpl['sparsify_relax']['description']} (default: {cpl['sparsify_relax']['default']} "
                            "synthetic; read data: the library's, false)")
    for name in ("n_components", "min_det", "floor"):
        sub = dens[name]
        default = _section_default("density", name, 10)
        group.add_argument(_flag(name), type=_scalar(_types(sub), _flag(name)), default=None,
                           help=f"{sub.get('description', 'Gaussian mixture components per snapshot.')} "
                                f"(default: {default} synthetic, {_real_default('density', name)} read data)")


def _plot_flags(parser) -> None:
    synthetic = schema()["properties"]["plots"]["properties"]
    real = schema()["$defs"]["real_dataset"]["properties"]["plots"]["properties"]
    group = parser.add_argument_group("pictures (workflow: plots.*, datasets.<name>.plots.*)")
    for name in ("grid_points", "n_levels", "max_points"):
        group.add_argument(_flag(name), type=int, default=None,
                           help=f"{synthetic[name].get('description', 'Level curves drawn.')} (default: "
                                f"{synthetic[name]['default']} synthetic, {real[name]['default']} read data)")
    group.add_argument("--limits", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                       help=f"{synthetic['limits']['description']} Synthetic only "
                            f"(default: {_show(synthetic['limits']['default'])})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jkonetstar", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    method_help = f"a registered method, one of: {', '.join(methods.names())}"

    def command(name, help):
        return commands.add_parser(name, help=help, description=help, formatter_class=_Wrapping)

    sim = command("simulate", "simulate a synthetic population time course (jkonetstar.jobs.simulate)")
    _simulation_flags(sim, required=True)
    sim.add_argument("--independent", action="store_true",
                     help="every snapshot from its own population (no particle in two snapshots; the workflow's "
                          "pairing independent): writes independent_population.npz and independent_settings.json")
    sim.add_argument("--seed", type=int, default=0)
    _paths(sim, "population", "settings")

    read = command("read", "read a user data file into population.npz (jkonetstar.jobs.read_dataset)")
    read.add_argument("data", type=Path, help=schema()["$defs"]["real_dataset"]["properties"]["path"]["description"])
    _data_flags(read)
    _paths(read, "population", "population_summary")

    cpl = command("couple", "split a population, couple its snapshots, fit densities (jkonetstar.jobs.couple)")
    _couple_flags(cpl)
    cpl.add_argument("--seed", type=int, default=0, help="seed of the split, shuffles and mixtures")
    _paths(cpl, "population", "train", "test", "train_population", "mixtures", "couplings_summary",
           inputs=("population",))

    trn = command("train", "fit any registered method (jkonetstar.jobs.train)")
    trn.add_argument("--method", required=True, choices=methods.names(), metavar="METHOD", help=method_help)
    trn.add_argument("--seed", type=int, default=0)
    _add_hp_flags(trn, "train")
    _paths(trn, "train", "test", "train_population", "model", "history", "fit",
           inputs=("train", "test", "train_population"))

    evl = command("evaluate", "metrics.json, levels.png and predictions.png of a trained run "
                              "(jkonetstar.jobs.evaluate)")
    evl.add_argument("--seed", type=int, default=None,
                     help="the run's seed (default: the simulation's for a synthetic run, else 0)")
    evl.add_argument("--settings", type=Path, default=None,
                     help="synthetic run: simulate's settings.json, the true energies (default: DIR/settings.json)")
    evl.add_argument("--population", type=Path, default=None,
                     help="read data: the population.npz of read (default: DIR/population.npz when DIR has no "
                          "settings.json)")
    evl.add_argument("--couplings-summary", type=Path, default=None,
                     help="synthetic run: couple's couplings.json, its pairing and OT (default: DIR/couplings.json)")
    evl.add_argument("--dataset", default=None, help="read data: the dataset's name (default: from population.json)")
    _add_hp_flags(evl, "evaluate")
    _plot_flags(evl)
    _paths(evl, "model", "fit", "test", "metrics", "levels", "predictions", inputs=("model", "fit", "test"))

    run = command("run", "every stage for one method on one dataset, into one directory with the workflow's "
                         "file names")
    run.add_argument("--data", type=Path, default=None,
                     help="a user data file (see read); or --potential and the simulation flags")
    _simulation_flags(run, required=False)
    run.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    _data_flags(run)
    _couple_flags(run)
    run.add_argument("--method", required=True, choices=methods.names(), metavar="METHOD", help=method_help)
    run.add_argument("--seed", type=int, default=0, help="seed of every stage")
    run.add_argument("--split-seed", type=int, default=None,
                     help="read data: seed of the split and mixtures (workflow split_seed; default: --seed)")
    _add_hp_flags(run, "run")
    _plot_flags(run)
    run.add_argument("--out", type=Path, required=True, help="output directory")
    for sub in [parser, *commands.choices.values()]:  # schema texts hold "%": no argparse format strings here
        for action in sub._actions:
            if action.help is not argparse.SUPPRESS:
                action.help = (action.help or "").replace("%", "%%")
                if (action.option_strings and "default:" not in action.help and action.nargs != 0
                        and action.default not in (None, argparse.SUPPRESS, _UNSET)):
                    action.help = f"{action.help} (default: {_show(action.default)})".strip()
    return parser


# ---- the stages ----


def _path(args, name: str) -> Path:
    given = getattr(args, name, None)
    return Path(given) if given is not None else args.dir / FILES[name]


def _npz_keys(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile):
        return []


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    with open(path) as f:
        return json.load(f)


def simulate(args) -> None:
    from jkonetstar import jobs

    stem = "independent_" if args.independent else ""
    population = args.population or args.dir / FILES[f"{stem}population"]
    settings = args.settings or args.dir / FILES[f"{stem}settings"]
    simulation = {"dt": args.dt, "n_steps": args.n_steps, **({"independent": True} if args.independent else {})}
    jobs.start(None, "simulate")
    jobs.simulate(seed=args.seed, run={"potential": args.potential, "interaction": args.interaction,
                                       "beta": float(args.beta), "n_particles": args.n_particles, "dim": args.dim},
                  simulation=_sorted(simulation), population=population, settings=settings)
    print(population)


def read(args) -> None:
    from jkonetstar import jobs

    source = {"location": str(args.data), "time_column": args.time_column, "n_pcs": args.n_pcs,
              "particle_column": args.particle_column,
              "test_location": str(args.test_data) if args.test_data is not None else None,
              **{name: getattr(args, f"source_{name}") for name in _optional_source_keys()}}
    dataset = args.dataset or Path(args.data).stem
    jobs.start(None, "read_dataset")
    jobs.read_dataset(dataset=dataset, source=_sorted(source), population=_path(args, "population"),
                      summary=_path(args, "population_summary"))
    print(_path(args, "population"))


def _couple_settings(args, real: bool) -> tuple[dict, dict, dict, str | None]:
    """The split, couplings and density settings, and the pairing, the workflow gives this kind of data."""
    if args.ot_method is not None:
        method = args.ot_method
    else:
        method = _real_default("couplings", "method") if real else _section_default("couplings", "method", "exact")
    if (method == "sinkhorn") != (args.ot_epsilon is not None):
        raise ValueError(f"give --ot-epsilon > 0 exactly when --ot-method is sinkhorn (method {method!r}, "
                         f"epsilon {args.ot_epsilon!r})")
    if args.ot_epsilon is not None and not args.ot_epsilon > 0:
        raise ValueError(f"--ot-epsilon must be > 0, got {args.ot_epsilon}")
    block = args.block_size
    extras = {"sinkhorn_threshold": args.sinkhorn_threshold, "sinkhorn_max_iterations": args.sinkhorn_max_iterations,
              "sparsify_relax": args.sparsify_relax}
    if real:
        if args.split_by is not None:
            raise ValueError("--split-by applies to simulated populations only: read data are split within every "
                             "snapshot (by particle for paired data) or come split")
        split = {"test_ratio": args.test_ratio if args.test_ratio is not None else _real_default("test_ratio")}
        couplings = {"method": method, "epsilon": args.ot_epsilon,
                     "block_size": _real_default("couplings", "block_size") if block is _UNSET else block,
                     **{k: v for k, v in extras.items() if v is not None}}
        density = {name: getattr(args, name) if getattr(args, name) is not None else _real_default("density", name)
                   for name in ("n_components", "min_det", "floor")}
        pairing = args.pairing
    else:
        split = {"test_ratio": args.test_ratio if args.test_ratio is not None else
                 _section_default("data", "test_ratio", 0.5),
                 "split_by": args.split_by or _section_default("data", "split_by", "trajectory")}
        couplings = {"method": method, "epsilon": args.ot_epsilon,
                     "block_size": _section_default("couplings", "block_size", 1000) if block is _UNSET else block,
                     **{k: v if v is not None else _section_default("couplings", k, None) for k, v in extras.items()}}
        density = {name: getattr(args, name) if getattr(args, name) is not None else
                   _section_default("density", name, 10) for name in ("n_components", "min_det", "floor")}
        pairing = args.pairing or "paired"
    return _sorted(split), _sorted(couplings), _sorted(density), pairing


def _couple(args, population: Path, seed: int, outputs: dict) -> None:
    from jkonetstar import jobs

    keys = _npz_keys(population)
    if "x" not in keys and "X" in keys:
        raise ValueError(f"{population}: a user data file (array X): turn it into a population with "
                         "`jkonetstar read` first")
    real = "time_values" in keys  # written by read (jkonetstar.jobs.read_dataset), never by simulate
    split, couplings, density, pairing = _couple_settings(args, real)
    jobs.start(None, "couple")
    jobs.couple(population=population, seed=seed, split=split, couplings=couplings, density=density,
                pairing=pairing, given_split=real, **outputs)


def couple(args) -> None:
    population = args.population
    if population is None:
        independent = args.dir / FILES["independent_population"]
        population = (independent if args.pairing == "independent" and independent.is_file()
                      else args.dir / FILES["population"])
    _couple(args, population, args.seed, {
        "train": _path(args, "train"), "test": _path(args, "test"),
        "train_population": _path(args, "train_population"), "mixtures": _path(args, "mixtures"),
        "summary": _path(args, "couplings_summary")})
    print(_path(args, "couplings_summary"))


def _train(spec, hp: dict, seed: int, files: dict) -> None:
    from jkonetstar import jobs

    jobs.start(None, "train")
    jobs.train(solver=spec.name, seed=seed, hp=training_hp(spec, hp), **files)


def train(args) -> None:
    spec = methods.get(args.method)
    # read data (the couplings job's test file carries the snapshot times) take the workflow's read-data defaults
    hp = method_hp(spec, _given_hp(args), "train", real="time_values" in _npz_keys(_path(args, "test")))
    _train(spec, hp, args.seed, {name: _path(args, name) for name in
                                 ("test", "train_population", "model", "history", "fit")} | {
        "couplings": _path(args, "train")})
    print(_path(args, "model"))


def _plots(args, real: bool) -> dict:
    if real and args.limits is not None:
        raise ValueError("--limits applies to synthetic runs only (read data are drawn over the data window)")
    section = (schema()["$defs"]["real_dataset"]["properties"]["plots"] if real else schema()["properties"]["plots"])
    given = {name: getattr(args, name) for name in ("grid_points", "n_levels", "max_points", "limits")
             if getattr(args, name, None) is not None}
    return _sorted(fill_defaults(section, {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}))


def _ot_label(summary: dict) -> str:
    """The workflow's ot path label of a couplings setting (common.smk ``ot_label``)."""
    return "exact" if summary["method"] == "exact" else f"sinkhorn-{float(summary['epsilon'])!r}"


def _evaluate(args, spec, hp: dict, seed: int | None, *, settings: Path | None, population: Path | None,
              couplings_summary: Path | None, dataset: str | None, files: dict) -> None:
    from jkonetstar import jobs

    real = settings is None
    if real:
        keys = _npz_keys(population)
        if "time_values" not in keys:
            raise ValueError(f"{population}: not a population written by read (no array time_values); "
                             "a synthetic run needs --settings (simulate's settings.json)")
        if dataset is None:
            summary = population.with_name(FILES["population_summary"])
            dataset = _load_json(summary)["dataset"] if summary.is_file() else population.parent.name
        run = {"dataset": dataset, "solver": spec.name, "seed": int(seed if seed is not None else 0)}
        truth = None
    else:
        simulated = _load_json(settings)
        coupled = _load_json(couplings_summary)
        run = {"potential": simulated["potential"], "interaction": simulated["interaction"],
               "beta": float(simulated["beta"]), "dim": int(simulated["dim"]),
               "n_particles": int(simulated["n_particles"]), "pairing": coupled["pairing"], "ot": _ot_label(coupled),
               "solver": spec.name, "seed": int(seed if seed is not None else simulated["seed"])}
        truth = {"potential": simulated["potential"], "interaction": simulated["interaction"],
                 "beta": float(simulated["beta"]), "dt": simulated["dt"]}
        population = None
    jobs.start(None, "evaluate")
    # The couplings summary holds the test split's no-motion reference (as the workflow's evaluate job reads it).
    reference = couplings_summary if couplings_summary is not None and Path(couplings_summary).is_file() else None
    jobs.evaluate(run=run, truth=truth, tau=hp["tau"], predict_options=predict_options(spec, hp),
                  plots=_plots(args, real), population=population, couplings=reference, **files)


def _model_method(path: Path):
    import numpy as np

    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if "solver" not in _npz_keys(path):
        raise ValueError(f"{path}: not a model written by train (no array solver)")
    with np.load(path, allow_pickle=False) as arrays:
        return methods.get(str(arrays["solver"]))


def evaluate(args) -> None:
    model = _path(args, "model")
    spec = _model_method(model)
    settings, population = args.settings, args.population
    if settings is None and population is None:
        candidates = [args.dir / FILES["settings"], args.dir / FILES["independent_settings"]]
        summary = args.couplings_summary or args.dir / FILES["couplings_summary"]
        if summary.is_file() and _load_json(summary).get("pairing") == "independent":
            candidates.reverse()
        settings = next((c for c in candidates if c.is_file()), None)
        if settings is None:
            population = args.dir / FILES["population"]
            if not population.is_file():
                raise ValueError(f"{args.dir}: no settings.json (synthetic run) nor population.npz (read data): "
                                 "give --settings or --population")
    elif settings is not None and population is not None:
        raise ValueError("give --settings (synthetic run) or --population (read data), not both")
    hp = method_hp(spec, _given_hp(args), "evaluate", real=settings is None)
    _evaluate(args, spec, hp, args.seed, settings=settings, population=population,
              couplings_summary=args.couplings_summary or args.dir / FILES["couplings_summary"],
              dataset=args.dataset, files={name: _path(args, name) for name in
                                           ("model", "fit", "test", "metrics", "levels", "predictions")})
    print(_path(args, "metrics"))


def run(args) -> None:
    """simulate (or read) -> couple -> train -> evaluate, every file in ``args.out`` under the workflow's name."""
    spec = methods.get(args.method)
    hp = method_hp(spec, _given_hp(args), "run", real=args.data is not None)  # checked before any stage runs
    if (args.data is None) == (args.potential is None):
        raise ValueError("give --data (a user data file) or --potential (a simulated population), one of them")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / file for name, file in FILES.items()}
    if args.data is not None:
        if args.independent:
            raise ValueError("--independent applies to simulated populations only")
        args.dir, args.population, args.population_summary = out, None, None
        read(args)
        population, settings, seed_couple = files["population"], None, (
            args.split_seed if args.split_seed is not None else args.seed)
    else:
        if args.split_seed is not None:
            raise ValueError("--split-seed applies to read data only (a synthetic run has one seed)")
        args.independent = args.pairing == "independent"
        args.dir, args.population, args.settings = out, None, None
        simulate(args)
        stem = "independent_" if args.independent else ""
        population, settings, seed_couple = files[f"{stem}population"], files[f"{stem}settings"], args.seed
    _couple(args, population, seed_couple, {
        "train": files["train"], "test": files["test"], "train_population": files["train_population"],
        "mixtures": files["mixtures"], "summary": files["couplings_summary"]})
    _train(spec, hp, args.seed, {"couplings": files["train"], "test": files["test"],
                                 "train_population": files["train_population"], "model": files["model"],
                                 "history": files["history"], "fit": files["fit"]})
    _evaluate(args, spec, hp, args.seed, settings=settings, population=population if settings is None else None,
              couplings_summary=files["couplings_summary"], dataset=args.dataset or (
                  Path(args.data).stem if args.data is not None else None),
              files={name: files[name] for name in ("model", "fit", "test", "metrics", "levels", "predictions")})
    print(files["metrics"])


COMMANDS = {"simulate": simulate, "read": read, "couple": couple, "train": train, "evaluate": evaluate, "run": run}


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; a ValueError (bad data, settings or files) is ``error: <one line>`` and exit code 2."""
    try:
        parser = _parser()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)  # nothing heavy imported before this line: --help is instant
    import logging

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("jax").setLevel(logging.WARNING)  # not its backend probing
    try:
        COMMANDS[args.command](args)
    except ValueError as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

import itertools
import math
import os
import sys
import tempfile
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# This checkout's library, as the scripts import it (not another checkout's editable install).
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from jkonetstar import methods  # the method registry: standard library only, no JAX at parse time

if not config:

    configfile: "config/config.yaml"


def _config_error(error):
    """Returns a one-line message naming the config setting a schema error is about."""
    cause = error.__cause__ or error.__context__
    if not hasattr(cause, "absolute_path"):
        return str(error).replace("\n", " ")
    setting = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in cause.absolute_path)
    setting = setting.lstrip(".") or "<top level>"
    return f"invalid config setting {setting}: {cause.message}"


def _renamed_pairing_settings():
    """The settings that still name the pairing "unpaired" (now "shuffled": jkonetstar.couplings.check_pairing)."""
    sections = [("experiments", "pairings"), ("datasets", "pairing")]
    found = []
    for section, key in sections:
        entries = config.get(section)
        for name, entry in (entries.items() if isinstance(entries, dict) else []):
            value = entry.get(key) if isinstance(entry, dict) else None
            if value == "unpaired" or (isinstance(value, list) and "unpaired" in value):
                found.append(f"{section}.{name}.{key}")
    return found


for _where in _renamed_pairing_settings():
    raise WorkflowError(
        f"invalid config setting {_where}: pairing 'unpaired' is now called 'shuffled' (paired data "
        "with the order lost): use 'shuffled', or 'independent' for snapshots that share no particle"
    )


def registry_schema(path):
    """The config schema with the registry's method names filled in (a method's hyper-parameters follow the
    schema's $defs of its family); written to a temporary file, the form snakemake.utils.validate reads."""
    with open(path) as f:
        schema = yaml.safe_load(f)
    schema["properties"]["solvers"]["properties"] = {
        name: {"$ref": f"#/$defs/{spec.family}", "default": {}} for name, spec in methods.METHODS.items()
    }
    schema["$defs"]["solver_name"]["enum"] = methods.names()
    schema["$defs"]["baseline_name"]["enum"] = methods.names("jkonet")
    with tempfile.NamedTemporaryFile("w", suffix=".schema.yaml", delete=False) as f:
        yaml.safe_dump(schema, f)
    return f.name


_schema = registry_schema(f"{workflow.basedir}/schemas/config.schema.yaml")
try:
    validate(config, schema=_schema)
except WorkflowError as error:
    raise WorkflowError(_config_error(error)) from None
finally:
    os.unlink(_schema)

if (config["couplings"]["method"] == "sinkhorn") != (config["couplings"]["epsilon"] is not None):
    raise WorkflowError(
        "invalid config setting couplings.epsilon: give epsilon > 0 exactly when method is sinkhorn "
        f"(method={config['couplings']['method']!r}, epsilon={config['couplings']['epsilon']!r})"
    )


def linear_feature_count(solver, dim, overrides=None):
    """Feature count of a closed-form solver's map in dimension ``dim`` (jkonetstar.methods.feature_count)."""
    options = {**methods.FEATURE_DEFAULTS, **config["solvers"][solver].get("features", {}), **(overrides or {})}
    return methods.feature_count(dim, options["degree"], options["rbf_per_dim"])


for _name, _grid in config["experiments"].items():
    for _solver in _grid["solvers"]:
        if not methods.get(_solver).closed_form:
            continue
        _too_big = [d for d in _grid["dims"] if linear_feature_count(_solver, d) > methods.MAX_FEATURES]
        if _too_big:
            raise WorkflowError(
                f"invalid config setting experiments.{_name}.dims: linear solver {_solver!r} cannot run in "
                f"d = {_too_big} ({linear_feature_count(_solver, min(_too_big))} features > "
                f"{methods.MAX_FEATURES}; linear features suit d <= 3); use jkonet-star-potential there"
            )


# Readable wildcard paths: one directory level per setting. A coupled dataset {data} is synthetic
# (SYNTHETIC_DATA: a simulated DATASET with its pairing and coupling) or real (REAL_DATA: a dataset of the
# config's `rna`/`datasets` sections and the run's seed); the couplings, train, evaluate and table rules take
# both, their differences being params (data_kind and the *_settings functions below).
#
#   results/data/<DATASET>/population.npz                       simulated (rules simulate, simulate_independent)
#   results/data/<REAL_DATASET>/population.npz                  read (rule read_dataset), snapshots 0..T
#   results/data/<data>/{train_couplings,test_population,...}   rule couplings
#   results/runs/<data>/solver~<m>/{model.npz,metrics.json,...} rules train, evaluate
#   results/tables/<experiment>.csv, results/tables/datasets/<name>.csv (+ _history.csv)   rule table
DATASET = "potential~{potential}/interaction~{interaction}/beta~{beta}/dim~{dim}/n~{n}/seed~{seed}"
SYNTHETIC_DATA = f"{DATASET}/pairing~{{pairing}}/ot~{{ot}}"
REAL_DATASET = "dataset~{dataset}"
REAL_DATA = f"{REAL_DATASET}/seed~{{seed}}"
# The leave-one-timepoint-out protocol (a real dataset's `leave_one_out`): snapshot `holdout` left out.
REAL_LOO_DATA = f"{REAL_DATASET}/holdout~{{holdout}}/seed~{{seed}}"
COUPLED = "{data}"
RUN = "{data}/solver~{solver}"

# Library files each stage runs: declared as inputs so that a content change reruns exactly the
# stages that use them (profiles set rerun-triggers without `code`; a touch alone reruns nothing).
_CORE = ["src/jkonetstar/__init__.py", "src/jkonetstar/jobs.py", "src/jkonetstar/io.py"]
CODE = {
    "simulate": [
        "workflow/scripts/simulate.py",
        *_CORE,
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/simulate.py",
        "src/jkonetstar/energies.py",
    ],
    "read_dataset": ["workflow/scripts/read_dataset.py", *_CORE, "src/jkonetstar/data.py"],
    "couplings": [
        "workflow/scripts/couplings.py",
        *_CORE,
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/split.py",
        "src/jkonetstar/couplings.py",
        "src/jkonetstar/density.py",
    ],
    "train": [
        "workflow/scripts/train.py",
        *_CORE,
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/methods.py",
        "src/jkonetstar/baselines.py",
        "src/jkonetstar/training.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
    ],
    "evaluate": [
        "workflow/scripts/evaluate.py",
        *_CORE,
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/methods.py",
        "src/jkonetstar/baselines.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/energies.py",
        "src/jkonetstar/plots.py",
    ],
    "table": ["workflow/scripts/table.py", *_CORE],
    "figure": [
        "workflow/scripts/figure.py",
        *_CORE,
        "src/jkonetstar/figures.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/methods.py",
    ],
    "rna_table": ["workflow/scripts/rna_table.py", *_CORE, "src/jkonetstar/figures.py", "src/jkonetstar/published.csv"],
    "rna_protocols": [
        "workflow/scripts/rna_protocols.py",
        *_CORE,
        "src/jkonetstar/figures.py",
        "src/jkonetstar/published.csv",
    ],
    "rna_figure": [
        "workflow/scripts/rna_figure.py",
        *_CORE,
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/figures.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/published.csv",
    ],
}
CODE["prediction"] = [*CODE["figure"], "workflow/scripts/prediction.py"]
# The learnt energy of a real-data run at its cells (the energy rule) runs the files of evaluate and the .h5ad writer.
CODE["energy"] = ["workflow/scripts/energy.py", *CODE["evaluate"][1:], "src/jkonetstar/data.py"]


def beta_label(beta):
    """Path form of a diffusion coefficient: the shortest float repr (0.0, 0.1, 1e-05)."""
    return repr(float(beta))


def ot_label(coupling):
    """Path form of one coupling setting: "exact", or "sinkhorn-<epsilon>" for a Sinkhorn epsilon."""
    return "exact" if coupling == "exact" else f"sinkhorn-{beta_label(coupling)}"


def grid_couplings(grid):
    """The ot labels of an experiment grid: its ``couplings`` list, else the couplings section's method."""
    default = config["couplings"]["epsilon"] if config["couplings"]["method"] == "sinkhorn" else "exact"
    return [ot_label(c) for c in grid.get("couplings", [default])]


def settings(value):
    """Returns ``value`` with every mapping's keys sorted, so that a job's params (compared between runs
    by their repr) do not change when keys are reordered in a config file."""
    if isinstance(value, dict):
        return {key: settings(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [settings(item) for item in value]
    return value


def config_slice(*path, keys=None):
    """Returns ``config[path...]`` (restricted to ``keys``) as sorted settings: a job's slice of the config."""
    value = config
    for part in path:
        value = value[part]
    return settings({key: value[key] for key in keys} if keys else value)


# ---- synthetic experiments ----


def experiment_runs(name):
    """Returns the wildcard values of every run of experiment ``name``, in grid order.

    ``subsets`` of the grid add solvers run on fewer potentials (e.g. the costly JKOnet baselines).
    """
    grid = config["experiments"][name]
    parts = [grid] + [{**grid, **subset} for subset in grid.get("subsets", [])]
    product = itertools.chain.from_iterable(
        itertools.product(
            part["potentials"],
            part["interactions"],
            part["betas"],
            part["dims"],
            part["n_particles"],
            part["seeds"],
            part["pairings"],
            grid_couplings(part),
            part["solvers"],
        )
        for part in parts
    )
    keys = ("potential", "interaction", "beta", "dim", "n", "seed", "pairing", "ot", "solver")
    runs = [dict(zip(keys, values)) for values in product]
    for run in runs:
        run["beta"] = beta_label(run["beta"])
    return runs


def run_files(name, filename):
    """Returns ``results/runs/<data>/solver~<solver>/<filename>`` for every run of experiment ``name``."""
    return [
        f"results/runs/{SYNTHETIC_DATA.format(**run)}/solver~{run['solver']}/{filename}"
        for run in experiment_runs(name)
    ]


def coupled_files(name, filename):
    """Returns ``results/data/<data>/<filename>`` for every run of experiment ``name``."""
    return [f"results/data/{SYNTHETIC_DATA.format(**run)}/{filename}" for run in experiment_runs(name)]


def experiment_outputs(name):
    """Returns the tables and figures an experiment produces (rule figure in workflow/rules/figures.smk)."""
    return [f"results/tables/{name}{suffix}.csv" for suffix in ("", "_history", "_summary")] + [
        f"results/figures/{name}.{kind}" for kind in ("png", "pdf")
    ]


def prediction_outputs():
    """The explicit-vs-implicit comparison of Exp. 4.1 (rule prediction_figure), when exp1 is configured."""
    if "exp1" not in config["experiments"]:
        return []
    return ["results/tables/prediction.csv"] + [f"results/figures/prediction.{kind}" for kind in ("png", "pdf")]


def experiment_solvers(name):
    """Returns the solvers of experiment ``name``: its grid's, then those only its subsets use."""
    grid = config["experiments"][name]
    subsets = [solver for subset in grid.get("subsets", []) for solver in subset["solvers"]]
    return list(dict.fromkeys(grid["solvers"] + subsets))


def figure_extra(wildcards):
    """The config slice an experiment's caption may need beyond its grid, solvers and data settings."""
    return config_slice("couplings")


# ---- real datasets ----
# The single-cell RNA experiment of the paper (Sec. 4.4, config section `rna`) and the user's own datasets
# (config section `datasets`): read -> split (within every snapshot; by particle for paired data; none for
# pre-split data) -> OT couplings + densities -> train -> evaluate, the synthetic experiments' rules. A
# dataset's `pairing` says whether its rows are paired across snapshots (particle ids), `test_path` (or the
# train_*/test_* directory form) that it comes split. The RNA data is not part of the repository: where
# `rna.path` (or `--config rna_path=...`) is null or missing, the RNA targets are left out with one message
# and everything else builds.
from jkonetstar import data as data_lib  # numpy and pandas: the formats' header-only peeks

REPO_ROOT = Path(workflow.basedir).parent
RNA_DEFAULT_LOCATION = "data/eb_rna_pca5"
RNA_OUTPUTS = ["results/tables/rna.csv", "results/figures/rna.png", "results/figures/rna.pdf"]
RNA_PROTOCOL_OUTPUTS = [
    "results/tables/rna_protocols.csv",
    "results/figures/rna_protocols.png",
    "results/figures/rna_protocols.pdf",
]


def _data_location(path):
    """A configured data path, relative to the repository root unless absolute."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _read_options(section):
    """The `datasets:` settings jkonetstar.data reads a file with (jkonetstar.data.Options; the .h5ad ones
    time_key, representation, pair_key included, so that peek sees a pair_key's particle ids)."""
    return {key: section[key] for key in data_lib.Options._fields if key in section}


def _check_real_dataset(where, section, location, test_location=None):
    """Raises WorkflowError naming the setting when a dataset's settings cannot work."""
    if test_location is not None and not test_location.exists():
        raise WorkflowError(f"invalid config setting {where}.test_path: {test_location} not found")
    if test_location is not None and data_lib.is_split_directory(location):
        raise WorkflowError(
            f"invalid config setting {where}.test_path: {location} is split already (train_*.npy, "
            "test_*.npy); give no test_path"
        )
    parts = [location] + ([test_location] if test_location is not None else [])
    peeks = [data_lib.peek(part, **_read_options(section)) for part in parts]  # headers only, once per file
    dim = peeks[0].dim
    if section["pairing"] in ("paired", "shuffled"):
        missing = [str(part) for part, found in zip(parts, peeks) if not found.particle_ids]
        if missing:
            raise WorkflowError(
                f"invalid config setting {where}.pairing: {section['pairing']!r} needs particle ids in {missing[0]} "
                f"(an npz array 'particle' or a CSV column {section['particle_column']!r}); use independent"
            )
    for key in ("solvers", "baselines"):
        for method in section.get(key, []):
            if method not in config["solvers"]:
                raise WorkflowError(
                    f"invalid config setting {where}.{key}: {key[:-1]} {method!r} has no hyper-parameters under "
                    f"solvers: (have {sorted(config['solvers'])})"
                )
    couplings = section["couplings"]
    if (couplings["method"] == "sinkhorn") != (couplings.get("epsilon") is not None):
        raise WorkflowError(
            f"invalid config setting {where}.couplings.epsilon: give epsilon > 0 exactly when method is sinkhorn"
        )
    for solver in section["solvers"]:
        if not methods.get(solver).closed_form or dim is None:
            continue
        size = linear_feature_count(solver, dim, section["training"].get("features"))
        if size > methods.MAX_FEATURES:
            raise WorkflowError(
                f"invalid config setting {where}.solvers: linear solver {solver!r} cannot run on {location} "
                f"(d = {dim}: {size} features, more than {methods.MAX_FEATURES}); "
                "use an MLP solver such as jkonet-star-potential"
            )


def _real_dataset(where, section, location):
    test_location = _data_location(section["test_path"]) if section.get("test_path") else None
    _check_real_dataset(where, section, location, test_location)
    return {
        "where": where,
        "files": data_lib.files(location, test_location),
        "settings": section,
        "source": {
            "location": str(location),
            "time_column": section["time_column"],
            "n_pcs": section["n_pcs"],
            "particle_column": section["particle_column"],
            "test_location": str(test_location) if test_location is not None else None,
            # .h5ad reading (AnnData .obs time and pair columns, .obsm/X/layer coordinates) and z-scoring
            "time_key": section["time_key"],
            "representation": section["representation"],
            "standardize": section["standardize"],
            "pair_key": section["pair_key"],
        },
    }


REAL_DATASETS = {}
RNA_SKIPPED = None
if "rna" in config:
    _rna_path = config.get("rna_path") or config["rna"].get("path")
    _rna_location = _data_location(_rna_path) if _rna_path else None
    if _rna_location is None:
        RNA_SKIPPED = "no data configured (rna.path is null)"
    elif not (
        _rna_location.is_file() or (_rna_location / "data.npy").is_file() or data_lib.is_split_directory(_rna_location)
    ):
        RNA_SKIPPED = f"{_rna_location} not found"
    else:
        REAL_DATASETS["rna"] = _real_dataset("rna", config["rna"], _rna_location)
elif config.get("rna_path"):
    raise WorkflowError("invalid config setting rna_path: it overrides rna.path, but the config has no rna: section")
if RNA_SKIPPED:
    print(
        f"NOTE: single-cell RNA experiment (targets rna, results/tables/rna.csv) skipped: {RNA_SKIPPED}. It needs "
        f"{data_lib.RNA_HELP}. Put it at {RNA_DEFAULT_LOCATION}/ (git-ignored) or pass --config rna_path=/path/to/it; "
        "every other target still builds.",
        file=sys.stderr,
    )

for _name, _section in config.get("datasets", {}).items():
    if not _section["path"]:
        raise WorkflowError(f"invalid config setting datasets.{_name}.path: give the data file or directory")
    _location = _data_location(_section["path"])
    if not _location.exists():
        raise WorkflowError(f"invalid config setting datasets.{_name}.path: {_location} not found")
    REAL_DATASETS[_name] = _real_dataset(f"datasets.{_name}", _section, _location)


def _method_runs(name, solvers, seeds, baselines, baseline_seeds):
    """``[{"dataset", "seed", "solver"}]``: the JKOnet* ``solvers`` on ``seeds``, then ``baselines`` on
    ``baseline_seeds``."""
    return [dict(dataset=name, seed=seed, solver=solver) for seed in seeds for solver in solvers] + [
        dict(dataset=name, seed=seed, solver=baseline) for seed in baseline_seeds for baseline in baselines
    ]


def real_dataset_runs(name):
    """Returns ``[{"dataset", "seed", "solver"}]`` of every run on real dataset ``name``: its JKOnet* solvers on
    ``seeds``, then its JKOnet baselines on ``baseline_seeds`` (default: ``seeds``)."""
    section = REAL_DATASETS[name]["settings"]
    baseline_seeds = section.get("baseline_seeds") or section["seeds"]
    return _method_runs(name, section["solvers"], section["seeds"], section.get("baselines", []), baseline_seeds)


def loo_runs(name):
    """Returns ``[{"dataset", "holdout", "seed", "solver"}]`` of the leave-one-out runs on real dataset ``name``
    (its `leave_one_out` section, whose null settings take the dataset's; none when the section is null)."""
    section = REAL_DATASETS[name]["settings"]
    loo = section.get("leave_one_out")
    if not loo:
        return []
    baseline_seeds = loo.get("baseline_seeds") or section.get("baseline_seeds") or section["seeds"]
    runs = _method_runs(
        name,
        loo.get("solvers") or section["solvers"],
        loo.get("seeds") or section["seeds"],
        loo.get("baselines", []),
        baseline_seeds,
    )
    return [dict(run, holdout=holdout) for holdout in loo["holdouts"] for run in runs]


def loo_files(name, filename):
    return [f"results/runs/{REAL_LOO_DATA.format(**run)}/solver~{run['solver']}/{filename}" for run in loo_runs(name)]


def real_dataset_files(name, filename):
    return [
        f"results/runs/{REAL_DATA.format(**run)}/solver~{run['solver']}/{filename}" for run in real_dataset_runs(name)
    ]


def realdata_outputs(which="all"):
    """The final files of the RNA experiment (``which="rna"``), of the user datasets (``"datasets"``) or both."""
    outputs = []
    if which in ("all", "rna") and "rna" in REAL_DATASETS:
        outputs += RNA_OUTPUTS + energy_outputs("rna")
        if loo_runs("rna"):
            outputs += RNA_PROTOCOL_OUTPUTS
    if which in ("all", "datasets"):
        for name in REAL_DATASETS:
            if name != "rna":
                outputs.append(f"results/tables/datasets/{name}.csv")
                outputs += real_dataset_files(name, "predictions.png") + real_dataset_files(name, "levels.png")
                outputs += energy_outputs(name)
    return outputs


def energy_outputs(name):
    """The learnt energy at the cells of every run on real dataset ``name`` (rule energy)."""
    return [path for filename in ENERGY_FILES for path in real_dataset_files(name, filename)]


ENERGY_FILES = ["energy.h5ad", "energy.csv", "energy.png"]


def realdata_hp(dataset, solver):
    """The method's hyper-parameters with the dataset's `training` overrides (and, for a JKOnet baseline, its
    `baseline_training` overrides on top)."""
    section, hp = REAL_DATASETS[dataset]["settings"], config["solvers"][solver]
    if methods.get(solver).family == "jkonet":  # only the training keys a baseline has (no features...)
        # (the JKOnet* prediction step of the dataset is not the baselines': they keep their own)
        overrides = {k: v for k, v in section["training"].items() if k in hp and k not in PREDICT_OPTIONS}
        return settings({**hp, **overrides, **section.get("baseline_training", {})})
    # Prediction settings are evaluation settings, read by the evaluate jobs, never a training input.
    return settings({k: v for k, v in {**hp, **section["training"]}.items() if k not in PREDICT_OPTIONS})


def rna_protocols():
    """Per RNA method, how this reproduction measured it (the source column of the RNA table)."""
    section = config["rna"]
    protocols = {}
    for method in section["solvers"] + section.get("baselines", []):
        baseline = method in section.get("baselines", [])
        protocols[method] = f"60/40 split within each time point (test ratio {section['test_ratio']}; " + (
            "a split per seed" if section.get("split_seed") is None else f"one split, seed {section['split_seed']}"
        ) + "), one-step-ahead W1 on the " f"test split, {realdata_hp('rna', method)['epochs']} epochs" + (
            "; training snapshots subsampled at random to the smallest" if baseline else discretisation("rna", method)
        )
    return protocols


def discretisation(dataset, solver):
    """How a JKOnet* solver's loss and prediction step meet on a real dataset, for the tables' source column."""
    step = realdata_predict_options(dataset, solver)["predict_step"]
    return f"; loss gradient at the {realdata_hp(dataset, solver)['gradient_at']}, {step} prediction step"


def loo_protocol(name):
    """How a real dataset's leave-one-out runs were measured (the source column of the protocol table)."""
    section = REAL_DATASETS[name]["settings"]
    loo = section["leave_one_out"]
    methods_run = (loo.get("solvers") or section["solvers"]) + loo.get("baselines", [])
    epochs = sorted({realdata_hp(name, method)["epochs"] for method in methods_run})
    return (
        f"leave-one-timepoint-out, snapshots {', '.join(map(str, loo['holdouts']))} left out in turn: trained on "
        "every cell of the others (the gap one JKO step of its length), the full snapshot before pushed one step "
        f"and scored by exact W1 against the full held-out one; {'/'.join(map(str, epochs))} epochs"
        + "".join(sorted({discretisation(name, m) for m in methods_run if methods.get(m).family != "jkonet"}))
    )


def rna_first():
    """The run the RNA figure draws: the first seed of the first solver."""
    section = REAL_DATASETS["rna"]["settings"]
    return {"dataset": "rna", "seed": section["seeds"][0], "solver": section["solvers"][0]}


def rna_first_data(filename):
    return f"results/data/{REAL_DATA.format(**rna_first())}/{filename}"


def rna_first_run(filename):
    return f"results/runs/{REAL_DATA.format(**rna_first())}/solver~{rna_first()['solver']}/{filename}"


# ---- wildcards ----


def _choices(values):
    return "|".join(sorted({str(v).replace(".", r"\.") for v in values}, key=len, reverse=True)) or "(?!)"


def _grid_values(key):
    parts = [p for grid in config["experiments"].values() for p in [grid, *grid.get("subsets", [])]]
    return [value for part in parts for value in part.get(key, [])]


_SYNTHETIC_CHOICES = dict(
    potential=_choices(_grid_values("potentials")),
    interaction=_choices(_grid_values("interactions")),
    beta=_choices(beta_label(b) for b in _grid_values("betas")),
    dim=_choices(_grid_values("dims")),
    n=_choices(_grid_values("n_particles")),
    seed=_choices(_grid_values("seeds")),
    pairing=_choices(_grid_values("pairings")),
    ot=_choices(label for grid in config["experiments"].values() for label in grid_couplings(grid)),
)
_REAL_CHOICES = dict(dataset=_choices(REAL_DATASETS), seed=r"\d+")
_METHODS = (
    _grid_values("solvers")
    + [m for d in REAL_DATASETS.values() for m in d["settings"]["solvers"] + d["settings"].get("baselines", [])]
    + [run["solver"] for name in REAL_DATASETS for run in loo_runs(name)]
)


def _data_pattern(template, choices):
    return template.format(**{key: f"(?:{value})" for key, value in choices.items()})


wildcard_constraints:
    **_SYNTHETIC_CHOICES,
    data="|".join(
        [
            _data_pattern(SYNTHETIC_DATA, _SYNTHETIC_CHOICES),
            _data_pattern(REAL_DATA, _REAL_CHOICES),
            _data_pattern(REAL_LOO_DATA, {**_REAL_CHOICES, "holdout": r"\d+"}),
        ]
    ),
    dataset=_REAL_CHOICES["dataset"],
    solver=_choices(_METHODS),
    experiment=_choices(config["experiments"]),
    table="|".join([_choices(config["experiments"]), f"datasets/(?:{_REAL_CHOICES['dataset']})"]),


# ---- per-job params: one function per setting, for synthetic and real data alike ----


def data_parts(wildcards):
    """The settings a coupled dataset's path spells: ``{potential, ..., pairing, ot}`` or ``{dataset, seed}``."""
    return dict(part.split("~", 1) for part in wildcards.data.split("/"))


def is_real(wildcards):
    """Whether a job's coupled dataset is real data (config `rna`/`datasets`) rather than simulated."""
    return wildcards.data.startswith("dataset~")


def _section(wildcards):
    return REAL_DATASETS[data_parts(wildcards)["dataset"]]["settings"]


def coupled_population(wildcards):
    """The population a coupled dataset is drawn from: the read dataset, the independent snapshots (rule
    simulate_independent) for pairing ``independent``, else the simulated paired one (rule simulate)."""
    parts = data_parts(wildcards)
    if is_real(wildcards):
        return f"results/data/{REAL_DATASET.format(**parts)}/population.npz"
    name = "independent_population.npz" if parts["pairing"] == "independent" else "population.npz"
    return f"results/data/{DATASET.format(**parts)}/{name}"


def coupling_seed(wildcards):
    """The seed of the split and mixtures: the run's; a real dataset's `split_seed` (one split for every run)."""
    fixed = _section(wildcards).get("split_seed") if is_real(wildcards) else None
    return int(data_parts(wildcards)["seed"]) if fixed is None else int(fixed)


def coupling_pairing(wildcards):
    """How the rows of consecutive snapshots relate: the path's pairing, or the real dataset's setting."""
    return settings(_section(wildcards)["pairing"]) if is_real(wildcards) else data_parts(wildcards)["pairing"]


def split_settings(wildcards):
    if "holdout" in data_parts(wildcards):  # leave-one-out: no split is drawn (jkonetstar.pipeline.leave_one_out)
        return {"holdout": int(data_parts(wildcards)["holdout"])}
    if is_real(wildcards):
        return {"test_ratio": _section(wildcards)["test_ratio"]}
    return config_slice("data", keys=["test_ratio", "split_by"])


def coupling_settings(wildcards):
    """The couplings section; for synthetic data with the method and epsilon of the path's ``ot``."""
    if is_real(wildcards):
        return settings(_section(wildcards)["couplings"])
    method, _, epsilon = data_parts(wildcards)["ot"].partition("-")
    return settings({**config["couplings"], "method": method, "epsilon": float(epsilon) if epsilon else None})


def density_settings(wildcards):
    return settings(_section(wildcards)["density"]) if is_real(wildcards) else config_slice("density")


def plot_settings(wildcards):
    return settings(_section(wildcards)["plots"]) if is_real(wildcards) else config_slice("plots")


def run_seed(wildcards):
    return int(data_parts(wildcards)["seed"])


# Evaluation settings of the JKOnet* solvers (jkonetstar.methods.PREDICT_OPTIONS): rule evaluate receives them,
# rule train never does, so choosing them never retrains.
PREDICT_OPTIONS = methods.PREDICT_OPTIONS


def method_predict_options(solver):
    """Prediction settings of a method: the JKOnet baselines' step and inner loop, or the JKOnet* solvers'
    PREDICT_OPTIONS (absent ones take the library defaults)."""
    hp = config["solvers"][solver]
    if methods.get(solver).family == "jkonet":
        return {
            "step": hp["predict_step"],
            "inner_steps": hp["inner_steps"],
            "inner_learning_rate": hp["inner_learning_rate"],
        }
    return settings({key: hp[key] for key in PREDICT_OPTIONS if key in hp})


def realdata_predict_options(dataset, solver):
    """A method's prediction settings on a real dataset: a JKOnet* solver's with the dataset's `training` ones
    on top (predict_step: schema default explicit, the pair of the read-data default gradient_at source)."""
    options = method_predict_options(solver)
    if methods.get(solver).family == "jkonet":
        return options
    section = REAL_DATASETS[dataset]["settings"]
    return settings({**options, **{k: v for k, v in section["training"].items() if k in PREDICT_OPTIONS}})


def predict_options(wildcards):
    if is_real(wildcards):
        return realdata_predict_options(data_parts(wildcards)["dataset"], wildcards.solver)
    return method_predict_options(wildcards.solver)


def method_hp(wildcards):
    """The training hyper-parameters of a run's method (prediction settings of the JKOnet* solvers excluded:
    they are evaluation settings); on real data with the dataset's `training` overrides."""
    if is_real(wildcards):
        return realdata_hp(data_parts(wildcards)["dataset"], wildcards.solver)
    hp = config_slice("solvers", wildcards.solver)
    if methods.get(wildcards.solver).family == "jkonet":  # the baselines evaluate with their own step in training
        return hp
    return {key: value for key, value in hp.items() if key not in PREDICT_OPTIONS}


def train_runtime(wildcards):
    """Generous wall-time estimate of one training job, in minutes (for cluster schedulers)."""
    if is_real(wildcards):
        return 60
    hp, spec, n = config["solvers"][wildcards.solver], methods.get(wildcards.solver), int(data_parts(wildcards)["n"])
    if spec.closed_form:
        return 30
    if spec.family == "jkonet":  # JKOnet baselines: seconds per epoch, not milliseconds
        return 10 + math.ceil(hp["epochs"] * 5 * n / 2000 / 60)
    pairs = n * config["data"]["n_steps"]
    per_epoch = 2e-6 * pairs * (hp["batch_size"] if spec.pairwise else 1)
    return 10 + math.ceil(2 * hp["epochs"] * per_epoch / 60)


from jkonetstar.jobs import DATASET_RUN_COLUMNS, RUN_COLUMNS  # numpy and the standard library only


def run_descriptors(wildcards):
    """The descriptors of a run, the first keys of its metrics (RUN_COLUMNS; real data: dataset, solver, seed)."""
    parts = data_parts(wildcards)
    if is_real(wildcards):
        holdout = {"holdout": int(parts["holdout"])} if "holdout" in parts else {}
        return {"dataset": parts["dataset"], "solver": wildcards.solver, "seed": int(parts["seed"]), **holdout}
    return {
        "potential": parts["potential"],
        "interaction": parts["interaction"],
        "beta": float(parts["beta"]),
        "dim": int(parts["dim"]),
        "n_particles": int(parts["n"]),
        "pairing": parts["pairing"],
        "ot": parts["ot"],
        "solver": wildcards.solver,
        "seed": int(parts["seed"]),
    }


def run_truth(wildcards):
    """The true energies of a synthetic run (recovery metrics, level curves); None for real data."""
    if is_real(wildcards):
        return None
    parts = data_parts(wildcards)
    return {
        "potential": parts["potential"],
        "interaction": parts["interaction"],
        "beta": float(parts["beta"]),
        "dt": config["data"]["dt"],
    }


def simulation_run(wildcards):
    """The energies and sizes of a synthetic dataset (rules simulate*: jkonetstar.jobs.simulate)."""
    return {
        "potential": wildcards.potential,
        "interaction": wildcards.interaction,
        "beta": float(wildcards.beta),
        "n_particles": int(wildcards.n),
        "dim": int(wildcards.dim),
    }


def run_category(wildcards):
    return "Real data" if is_real(wildcards) else "Runs"


def run_subcategory(wildcards):
    return data_parts(wildcards)["dataset" if is_real(wildcards) else "potential"]


def run_labels(figure):
    """Report labels of a run's pictures."""
    return lambda wildcards: {"solver": wildcards.solver, "figure": figure, "seed": data_parts(wildcards)["seed"]}


def _table_dataset(table):
    return table.removeprefix("datasets/") if table.startswith("datasets/") else None


def table_files(table, filename):
    """Every run file of a table's runs: an experiment's, or a real dataset's (``datasets/<name>``)."""
    dataset = _table_dataset(table)
    return real_dataset_files(dataset, filename) if dataset else run_files(table, filename)


def table_couplings(wildcards):
    """The couplings summaries of an experiment's runs (coupling times and counts in its table)."""
    return [] if _table_dataset(wildcards.table) else coupled_files(wildcards.table, "couplings.json")


def table_run_columns(wildcards):
    return DATASET_RUN_COLUMNS if _table_dataset(wildcards.table) else RUN_COLUMNS


def table_category(wildcards):
    return "Real data" if _table_dataset(wildcards.table) else "Tables"


def table_subcategory(wildcards):
    return _table_dataset(wildcards.table) or wildcards.table

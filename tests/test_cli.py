"""The command line (``jkonetstar`` / ``python -m jkonetstar``) runs the workflow's jobs with the workflow's arguments.

Each stage is run through :func:`jkonetstar.__main__.main` in this process (one JAX start for the file) and its
outputs compared with :mod:`jkonetstar.jobs` called directly with the arguments the Snakemake rules pass
(workflow/rules/*.smk, common.smk: the schema's defaults filled in, prediction settings as evaluation settings).
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from jkonetstar import jobs, methods
from jkonetstar.__main__ import main
from jkonetstar.data import load_population
from jkonetstar.density import MixtureSizeWarning

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
DEFS = SCHEMA["$defs"]

RUN_FILES = ["model.npz", "history.csv", "fit.json", "metrics.json", "levels.png", "predictions.png"]
COUPLED_FILES = ["train_couplings.npz", "test_population.npz", "train_population.npz", "density.npz",
                 "couplings.json"]
SIMULATED = dict(potential="wavy_plateau", n_particles=60, n_steps=3, dt=0.01, seed=0)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def errors(err: str) -> list[str]:
    """The ``error:`` lines of a run's stderr (library warnings may precede them)."""
    return [line for line in err.splitlines() if line.startswith("error:")]


def one_line(err: Exception) -> str:
    return "error: " + " ".join(str(err).split())


def family_hp(family, **overrides):
    """The hyper-parameters a workflow job gets for a method of ``family``: the schema's defaults (nested objects
    filled in too, as snakemake.utils.validate does) under the config's ``overrides``."""
    hp = {}
    for name, sub in DEFS[family]["properties"].items():
        if "default" in sub:
            hp[name] = dict(sub["default"]) if isinstance(sub["default"], dict) else sub["default"]
    if family == "jkonet-star":
        hp["features"] = {k: v["default"] for k, v in DEFS[family]["properties"]["features"]["properties"].items()}
    hp.update(overrides)
    return hp


def synthetic_plots():
    return {k: v["default"] for k, v in sorted(SCHEMA["properties"]["plots"]["properties"].items())}


@pytest.fixture(scope="module")
def coupled(tmp_path_factory):
    """One tiny simulated, coupled population (simulate -> couple through the command line)."""
    with pytest.MonkeyPatch.context() as mp:
        directory = tmp_path_factory.mktemp("cli")
        mp.chdir(directory)
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(directory / "jax-cache"))
        assert main(["-q", "simulate", "--potential", SIMULATED["potential"], "--n-particles", "60",
                     "--n-steps", "3", "--dir", "data"]) == 0
        assert main(["-q", "couple", "--dir", "data"]) == 0
        yield directory / "data"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-cache"))
    return tmp_path


def copy_data(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_simulate_and_couple_pass_the_workflow_arguments(coupled, workdir):
    """simulate's and couple's files equal those of jobs.simulate / jobs.couple called as rules simulate and
    couplings call them (data.* from config/config.yaml, couplings/density sections with the schema defaults)."""
    assert {"population.npz", "settings.json", *COUPLED_FILES} <= {p.name for p in coupled.iterdir()}
    jobs.simulate(seed=0, run={"potential": "wavy_plateau", "interaction": "none", "beta": 0.0, "n_particles": 60,
                               "dim": 2}, simulation={"dt": 0.01, "n_steps": 3},
                  population=workdir / "population.npz", settings=workdir / "settings.json")
    assert json.loads((workdir / "settings.json").read_text()) == json.loads((coupled / "settings.json").read_text())
    ours, theirs = np.load(coupled / "population.npz"), np.load(workdir / "population.npz")
    assert sorted(ours.files) == sorted(theirs.files) and all(np.array_equal(ours[k], theirs[k]) for k in ours.files)

    couplings = SCHEMA["properties"]["couplings"]["properties"]
    jobs.couple(population=workdir / "population.npz", seed=0, pairing="paired", given_split=False,
                split={"split_by": "trajectory", "test_ratio": 0.5},
                couplings={"block_size": 1000, "epsilon": None, "method": "exact",
                           "sinkhorn_max_iterations": couplings["sinkhorn_max_iterations"]["default"],
                           "sinkhorn_threshold": couplings["sinkhorn_threshold"]["default"],
                           "sparsify_relax": couplings["sparsify_relax"]["default"]},
                density={"floor": 1e-5, "min_det": 0.0, "n_components": 10}, train=workdir / "train_couplings.npz",
                test=workdir / "test_population.npz", train_population=workdir / "train_population.npz",
                mixtures=workdir / "density.npz", summary=workdir / "couplings.json")

    def summary(path):
        return {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds_per_snapshot_pair"}

    assert summary(coupled / "couplings.json") == summary(workdir / "couplings.json")
    for name in ("train_couplings.npz", "test_population.npz", "train_population.npz"):
        ours, theirs = np.load(coupled / name), np.load(workdir / name)
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs.files), name


def retrain_and_compare(method, train_hp, data, direct):
    """jobs.train with the workflow's hyper-parameters gives the CLI's model, bit for bit."""
    jobs.train(solver=method, seed=0, hp=train_hp, couplings=data / "train_couplings.npz",
               test=data / "test_population.npz", train_population=data / "train_population.npz",
               model=direct / "model.npz", history=direct / "history.csv", fit=direct / "fit.json")
    ours, theirs = np.load(data / "model.npz"), np.load(direct / "model.npz")
    assert sorted(ours.files) == sorted(theirs.files)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours.files), "the CLI trained with other settings"


def train_and_compare(capsys, coupled, run_dir, method, train_flags, overrides, evaluate_flags=(),
                      predict_options=None, retrain=True):
    """CLI train + evaluate into ``run_dir``; then jobs.train (``retrain``) and jobs.evaluate called directly with
    the workflow's arguments into ``run_dir/direct``: the model and metrics.json must be the same."""
    data = copy_data(coupled, run_dir)
    code, _, err = cli(capsys, "train", "--method", method, *train_flags, "--dir", data)
    assert code == 0, err
    code, _, err = cli(capsys, "evaluate", *evaluate_flags, "--dir", data)
    assert code == 0, err
    for name in RUN_FILES:
        assert (data / name).is_file() and (data / name).stat().st_size > 0, name
    metrics = json.loads((data / "metrics.json").read_text())
    assert math.isfinite(metrics["w1_mean"]) and metrics["solver"] == method

    spec = methods.get(method)
    hp = family_hp(spec.family, **overrides)
    train_hp = hp if spec.family == "jkonet" else {k: v for k, v in hp.items() if k not in methods.PREDICT_OPTIONS}
    direct = run_dir / "direct"
    direct.mkdir()
    if retrain:
        retrain_and_compare(method, train_hp, data, direct)
    else:  # a baseline compiles for ~20 s: its training settings are checked through fit.json only
        fit = json.loads((data / "fit.json").read_text())
        assert fit["epochs_run"] == overrides["epochs"] and fit["n_couplings"] == 0

    run = {"potential": SIMULATED["potential"], "interaction": "none", "beta": 0.0, "dim": 2, "n_particles": 60,
           "pairing": "paired", "ot": "exact", "solver": method, "seed": 0}
    truth = {"potential": SIMULATED["potential"], "interaction": "none", "beta": 0.0, "dt": 0.01}
    # the same fit.json, so the timing fields match too
    jobs.evaluate(run=run, truth=truth, tau=hp["tau"], predict_options=predict_options, plots=synthetic_plots(),
                  model=data / "model.npz", fit=data / "fit.json", test=data / "test_population.npz",
                  couplings=data / "couplings.json", metrics=direct / "metrics.json", levels=direct / "levels.png",
                  predictions=direct / "predictions.png")
    assert metrics == json.loads((direct / "metrics.json").read_text())
    assert 0 < metrics["w1_ratio"] == metrics["w1_mean"] / metrics["no_motion_w1_mean"]
    return metrics


def test_simulate_couple_train_evaluate_a_jkonet_star_mlp_solver(capsys, coupled, workdir):
    flags = ["--epochs", "3", "--hidden", "8", "8", "--batch-size", "30", "--eval-every", "1"]
    overrides = {"epochs": 3, "hidden": [8, 8], "batch_size": 30, "eval_every": 1}
    star = DEFS["jkonet-star"]["properties"]
    metrics = train_and_compare(
        capsys, coupled, workdir / "mlp", "jkonet-star-potential", flags, overrides,
        predict_options={"implicit_max_iterations": star["implicit_max_iterations"]["default"],
                         "implicit_tolerance": star["implicit_tolerance"]["default"]})
    assert metrics["epochs_run"] == 3


def test_simulate_couple_train_evaluate_a_jkonet_baseline(capsys, coupled, workdir):
    flags = ["--epochs", "1", "--inner-steps", "2", "--hidden", "8", "8", "--batch-size", "30", "--eval-every", "1"]
    overrides = {"epochs": 1, "inner_steps": 2, "hidden": [8, 8], "batch_size": 30, "eval_every": 1}
    metrics = train_and_compare(
        capsys, coupled, workdir / "baseline", "jkonet", flags, overrides, evaluate_flags=["--inner-steps", "2"], retrain=False,
        predict_options={"step": DEFS["jkonet"]["properties"]["predict_step"]["default"], "inner_steps": 2,
                         "inner_learning_rate": DEFS["jkonet"]["properties"]["inner_learning_rate"]["default"]})
    assert metrics["epochs_run"] == 1


def test_run_on_a_user_npz_with_X(capsys, caplog, workdir):
    """run: read -> couple -> train -> evaluate on an npz with X and t (times 0, 2, 5), the workflow's file names;
    the couplings equal those of jobs.couple called as rule dataset_couplings calls it."""
    rng = np.random.default_rng(0)
    t = np.repeat([0, 2, 5], 40)
    x = rng.normal(size=(len(t), 2)) * 0.5 + 0.4 * t[:, None]
    np.savez(workdir / "cells.npz", X=x, t=t)
    caplog.set_level(logging.INFO, logger="jkonetstar.jobs")
    code, _, err = cli(capsys, "run", "--data", "cells.npz", "--method", "jkonet-star-potential", "--epochs", "2",
                       "--hidden", "8", "--batch-size", "20", "--out", "out")
    assert code == 0, err
    out = workdir / "out"
    assert {"population.npz", "population.json", *COUPLED_FILES, *RUN_FILES} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "cells" and metrics["solver"] == "jkonet-star-potential"
    assert math.isfinite(metrics["w1_mean"]) and metrics["target_time_values"] == [2, 5]
    # read data take the workflow's read-data defaults (datasets.<name>.training): loss at the source, explicit step
    assert metrics["predict_step"] == "explicit" and "implicit_converged" not in metrics
    assert "'gradient_at': 'source'" in caplog.text

    real = DEFS["real_dataset"]["properties"]
    jobs.couple(population=out / "population.npz", seed=0, pairing=None, given_split=True,
                split={"test_ratio": real["test_ratio"]["default"]},
                couplings={"block_size": None, "epsilon": None, "method": "exact"},
                density={"floor": 1e-5, "min_det": 0.0, "n_components": 10}, train=workdir / "train_couplings.npz",
                test=workdir / "test_population.npz", train_population=workdir / "train_population.npz",
                mixtures=workdir / "density.npz", summary=workdir / "couplings.json")
    for name in ("train_couplings.npz", "test_population.npz"):
        ours, theirs = np.load(out / name), np.load(workdir / name)
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs.files), name



def test_snapshots_of_20_cells_next_to_2000_run_end_to_end(capsys, workdir):
    """Unequal snapshots (20, 2000, 20 cells, d = 2) through read -> couple -> train -> evaluate: the mixture of
    each 20-cell snapshot is capped (12 training cells: 4 components) with a warning naming it, and every stage
    finishes with finite scores (a closed-form potential: the mixtures are fitted whether it uses them or not)."""
    rng = np.random.default_rng(1)
    sizes = [20, 2000, 20]
    t = np.repeat([0, 1, 2], sizes)
    x = rng.normal(size=(len(t), 2)) * 0.5 + 0.3 * t[:, None]
    np.savez(workdir / "uneven.npz", X=x, t=t)
    with pytest.warns(MixtureSizeWarning) as caught:
        code, _, err = cli(capsys, "run", "--data", "uneven.npz", "--method", "jkonet-star-linear-potential",
                           "--features", "degree=2", "rbf_per_dim=0", "--out", "uneven")
    assert code == 0, err
    messages = [str(w.message) for w in caught if issubclass(w.category, MixtureSizeWarning)]
    assert [m.split(" has ")[0] for m in messages] == ["snapshot 0", "snapshot 2"], messages
    assert all("12 points" in m and "density.n_components = 10" in m for m in messages), messages
    metrics = json.loads((workdir / "uneven" / "metrics.json").read_text())
    assert len(metrics["w1_per_step"]) == 2 and all(math.isfinite(v) for v in metrics["w1_per_step"])
    components = json.loads((workdir / "uneven" / "couplings.json").read_text())["components_per_snapshot"]
    assert components == {"0": 4, "1": 10, "2": 4}  # max(1, n // (d + 1)) of 12 cells in d = 2


@pytest.mark.parametrize("case", ["nan", "fractional_time", "csv_nan"])
def test_read_refuses_bad_data_as_the_workflow_does(capsys, workdir, case):
    x, t = np.random.default_rng(0).normal(size=(20, 2)), np.repeat([0, 1], 10)
    if case == "nan":
        x[3, 1] = np.nan
        path = workdir / "bad.npz"
        np.savez(path, X=x, t=t)
    elif case == "fractional_time":
        path = workdir / "bad.npz"
        np.savez(path, X=x, t=t * 0.5)
    else:
        x[0, 0] = np.nan
        path = workdir / "bad.csv"
        path.write_text("a,b,t\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, t)))
    with pytest.raises(ValueError) as expected:
        load_population(str(path))
    code, _, err = cli(capsys, "read", path, "--dir", workdir)
    assert code == 2
    assert errors(err) == [one_line(expected.value)]
    assert not (workdir / "population.npz").exists()


def test_couple_points_a_raw_user_file_to_read(capsys, workdir):
    np.savez(workdir / "cells.npz", X=np.zeros((4, 2)), t=np.array([0, 0, 1, 1]))
    code, _, err = cli(capsys, "couple", "--population", "cells.npz", "--dir", workdir)
    assert code == 2 and "jkonetstar read" in errors(err)[0]


@pytest.mark.parametrize("argv, words", [
    (["--method", "jkonet-star-potential", "--features", "degree=2"], ["--features", "jkonet-star-potential"]),
    (["--method", "jkonet-star-linear", "--epochs", "3"], ["--epochs", "jkonet-star-linear"]),
    (["--method", "jkonet", "--ridge", "0.1"], ["--ridge", "jkonet"]),
    (["--method", "jkonet-star-potential", "--interaction-average", "minibatch"],
     ["--interaction-average", "jkonet-star-potential"]),
    (["--method", "jkonet-star-potential", "--predict-step", "jko"], ["--predict-step", "evaluation setting"]),
    (["--method", "jkonet", "--batch-size", "0"], ["--batch-size", "minimum"]),
    (["--method", "jkonet-star-linear", "--features", "width=-1"], ["--features width", "minimum"]),
])
def test_a_flag_that_does_not_apply_to_the_method_is_refused(capsys, workdir, argv, words):
    code, _, err = cli(capsys, "train", *argv, "--dir", workdir)
    assert code == 2
    [line] = errors(err)
    assert all(word in line for word in words), line
    assert not (workdir / "model.npz").exists()


def test_an_unknown_features_key_is_a_usage_error(capsys, workdir):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--method", "jkonet-star-linear", "--features", "colour=2"])
    assert exit.value.code == 2 and "degree" in capsys.readouterr().err


def _shown(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def test_train_help_lists_every_method_and_the_schema_defaults_without_jax():
    code = ("import sys\nfrom jkonetstar.__main__ import main\ntry:\n    main(['train', '--help'])\n"
            "except SystemExit:\n    pass\nprint('JAX LOADED' if 'jax' in sys.modules else 'NO JAX', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stderr.strip().endswith("NO JAX"), result.stderr
    text = " ".join(result.stdout.split())
    for name in methods.names():
        assert name in text, name
    options = text[text.index("hyper-parameters ("):]
    trained = {option for spec in methods.METHODS.values() for option in spec.options}
    for family in methods.FAMILIES:
        for name, sub in DEFS[family]["properties"].items():
            if name not in trained:
                continue
            flag = "--" + name.replace("_", "-")
            found = re.search(re.escape(flag) + r" .*?\[default: ([^;\]]*)", options)
            assert found, flag
            if "default" not in sub:
                continue
            default = sub["default"]
            if name == "features":
                default = " ".join(f"{k}={v['default']}" for k, v in sub["properties"].items())
            assert _shown(default) in found.group(1), (flag, found.group(1))
    assert "--implicit-tolerance" not in options  # an evaluation setting: evaluate and run take it
    help_run = subprocess.run([sys.executable, "-m", "jkonetstar", "run", "--help"], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
    assert help_run.returncode == 0 and "--implicit-tolerance" in help_run.stdout


def test_read_an_h5ad_with_the_schema_flags(capsys, workdir):
    """read's .h5ad flags (--time-key, --representation, --[no-]standardize, --pair-key, from the schema's
    real_dataset) give the files jobs.read_dataset writes from the workflow's source (common.smk _real_dataset)."""
    real = DEFS["real_dataset"]["properties"]
    assert {name: real[name]["default"] for name in ("time_key", "representation", "standardize", "pair_key")} == {
        "time_key": None, "representation": "X_pca", "standardize": False, "pair_key": None}
    path = Path(__file__).resolve().parent / "data" / "numeric.h5ad"
    code, _, err = cli(capsys, "read", path, "--time-key", "time", "--representation", "X_pca", "--standardize",
                       "--pair-key", "clone", "--dir", "cli")
    assert code == 0, err
    source = {"location": str(path), "time_column": real["time_column"]["default"], "n_pcs": real["n_pcs"]["default"],
              "particle_column": real["particle_column"]["default"], "test_location": None, "time_key": "time",
              "representation": "X_pca", "standardize": True, "pair_key": "clone"}
    jobs.read_dataset(dataset="numeric", source=source, population=workdir / "population.npz",
                      summary=workdir / "population.json")
    assert json.loads((workdir / "cli/population.json").read_text()) == json.loads(
        (workdir / "population.json").read_text())
    ours, theirs = np.load(workdir / "cli/population.npz"), np.load(workdir / "population.npz")
    assert sorted(ours.files) == sorted(theirs.files) and "particle" in ours.files
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs.files)
    assert json.loads((workdir / "population.json").read_text())["time_values"] == [0.0, 1.5, 4.0, 8.25]
    code, _, err = cli(capsys, "read", path, "--time-key", "time", "--no-standardize", "--dir", "plain")
    assert code == 0, err
    assert "particle" not in np.load(workdir / "plain/population.npz").files
    code, _, err = cli(capsys, "read", path, "--dir", "none")  # no --time-key: the reader's one line
    assert code == 2 and "set time_key to the .obs column" in errors(err)[0]

"""The method registry (jkonetstar.methods): the one list of methods the schema, workflow, figures and CLI read."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from jkonetstar import baselines, features, methods, models, pipeline, plots, training
from snakemake_runs import ROOT, TINY_CONFIG, copy_checkout, snakemake_command, snakemake_env, write_config

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def test_the_registry_imports_without_jax():
    # The Snakefile imports it at every parse: loading JAX there would cost seconds per dry run.
    code = "import sys, jkonetstar.methods; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'numpy')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_library_registries_are_views_of_the_registry():
    assert models.SOLVERS == {n: m for n, m in methods.METHODS.items() if m.family == "jkonet-star"}
    assert baselines.BASELINES == {n: m for n, m in methods.METHODS.items() if m.family == "jkonet"}
    assert list(methods.METHODS) == methods.names("jkonet-star") + methods.names("jkonet")
    for name in methods.METHODS:
        assert pipeline.get_method(name) is methods.METHODS[name]
        assert plots.solver_label(name) == methods.METHODS[name].label != ""
    with pytest.raises(ValueError, match=re.escape("unknown method 'jkonet-star-wavy': choose one of ['jkonet-star',")):
        methods.get("jkonet-star-wavy")
    with pytest.raises(ValueError, match="unknown solver 'jkonet'"):
        methods.get("jkonet", "jkonet-star")


def test_every_family_has_its_schema_and_the_options_of_its_methods_are_the_schema_settings():
    # The schema validates a method's hyper-parameters with $defs/<family>; the registry says which of those
    # settings each method takes (training) or reads at evaluation. Together they cover the schema exactly.
    for family in methods.FAMILIES:
        specs = [methods.METHODS[name] for name in methods.names(family)]
        declared = {option for spec in specs for option in (*spec.options, *spec.evaluation_options)}
        assert declared == set(SCHEMA["$defs"][family]["properties"]), family
    star = SCHEMA["$defs"]["jkonet-star"]["properties"]
    assert star["predict_step"]["enum"] == list(models.PREDICT_STEPS)
    assert star["select"]["enum"] == list(pipeline.SELECTIONS)
    assert star["lr_schedule"]["enum"] == list(training.LR_SCHEDULES)
    # Closed-form solvers take features and no epochs; pairwise ones (the MLP interaction) the interaction mean.
    assert "features" in methods.get("jkonet-star-linear").options
    assert "epochs" not in methods.get("jkonet-star-linear").options
    assert [n for n, m in methods.METHODS.items() if m.pairwise] == ["jkonet-star"]
    assert "interaction_average" in methods.get("jkonet-star").options


@pytest.mark.parametrize("dim, degree, rbf", [(1, 4, 10), (2, 4, 10), (3, 2, 4), (2, 1, 3)])
def test_feature_count_is_the_size_of_the_feature_map(dim, degree, rbf):
    fmap = features.feature_map(dim, degree=degree, rbf_per_dim=rbf)
    x = np.zeros((3, dim), np.float32)
    assert features.features(fmap, x).shape[1] == methods.feature_count(dim, degree, rbf)
    assert features.MAX_FEATURES is methods.MAX_FEATURES


def test_feature_map_refuses_more_than_the_registry_limit():
    assert methods.feature_count(3, 4, 10) == 124 + 1000 == 1124  # 5^3 - 1 monomials + 10^3 bumps
    with pytest.raises(ValueError, match=r"dim=4 need 10624 features \(more than 5000\)"):
        features.feature_map(4)


def test_no_method_is_recognised_by_its_name_outside_the_registry():
    # What a method is comes from its spec (family, closed_form, pairwise): never from its name.
    patterns = [r"""["']linear["'] in""", r"""(name|solver) == ["']jkonet""", r"""startswith\(["']jkonet""", r"isinstance\([^)]*Spec\)",
                r"""["']inner_steps["'] in hp"""]
    files = [*ROOT.glob("workflow/**/*.smk"), ROOT / "workflow/Snakefile", *ROOT.glob("workflow/scripts/*.py"),
             *[p for p in ROOT.glob("src/jkonetstar/*.py") if p.name != "methods.py"]]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if any(re.search(p, line) for p in patterns)]
    assert found == []


def test_the_config_schema_takes_its_method_names_from_the_registry(tmp_path):
    # Every registered method gets the schema defaults of its family; an unregistered name is one line naming
    # the setting, whatever the registry holds.
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["experiments"]["exp1"]["solvers"] = ["jkonet-star-potential", "jkonet-star-wavy"]
    write_config(workdir / "bad.yaml", config)
    result = subprocess.run(snakemake_command("bad.yaml", "--dry-run"), cwd=workdir, capture_output=True, text=True,
                            env=snakemake_env(), timeout=120)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "invalid config setting" in line]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "experiments.exp1.solvers[1]" in lines[0] and "'jkonet-star-wavy' is not one of" in lines[0]
    assert all(name in lines[0] for name in methods.METHODS)

# Aggregates of Exp. 4.2 (scaling laws), 4.3 (general energies), the coupling ablation and the pairing
# comparison, and one target rule per experiment (`snakemake exp2` builds that figure alone).


localrules:
    exp2,
    exp3,
    ablation,
    pairing,
    figure_exp2,
    figure_exp3,
    figure_ablation,
    figure_pairing,


def experiment_slice(name):
    """Per-job slices of the config for the figure of experiment ``name``: its grid and its solvers."""
    return {
        "grid": lambda w: config_slice("experiments", name),
        "solvers": lambda w: config_slice("solvers", keys=config["experiments"][name]["solvers"]),
    }


rule recovery:
    input:
        models=lambda w: run_files(w.experiment, "model.npz"),
        code=CODE["recovery"],
    output:
        table="results/tables/{experiment}_recovery.csv",
    params:
        runs=lambda w: experiment_runs(w.experiment),
        taus=lambda w: {s: config["solvers"][s]["tau"] for s in config["experiments"][w.experiment]["solvers"]},
        dt=config["data"]["dt"],
        grid=config_slice("plots", keys=["limits", "grid_points"]),
    log:
        "results/logs/recovery/{experiment}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/recovery.py"


rule figure_exp2:
    input:
        table="results/tables/exp2.csv",
        code=CODE["figure_exp2"],
    output:
        png=report("results/figures/exp2.png", caption="../report/exp2.rst", category="Figures"),
        pdf="results/figures/exp2.pdf",
        summary=report("results/tables/exp2_summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        **experiment_slice("exp2"),
        data=config_slice("data"),
    log:
        "results/logs/figure_exp2/exp2.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure_exp2.py"


rule figure_exp3:
    input:
        table="results/tables/exp3.csv",
        code=CODE["figure_exp3"],
    output:
        png=report("results/figures/exp3.png", caption="../report/exp3.rst", category="Figures"),
        pdf="results/figures/exp3.pdf",
        summary=report("results/tables/exp3_summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        **experiment_slice("exp3"),
        data=config_slice("data"),
        plots=config_slice("plots", keys=["limits", "grid_points"]),
    log:
        "results/logs/figure_exp3/exp3.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure_exp3.py"


rule figure_ablation:
    input:
        table="results/tables/ablation.csv",
        code=CODE["figure_ablation"],
    output:
        png=report("results/figures/ablation.png", caption="../report/ablation.rst", category="Figures"),
        pdf="results/figures/ablation.pdf",
        summary=report("results/tables/ablation_summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        **experiment_slice("ablation"),
        data=config_slice("data"),
        couplings=config_slice("couplings"),
    log:
        "results/logs/figure_ablation/ablation.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure_ablation.py"


rule figure_pairing:
    input:
        table="results/tables/pairing.csv",
        code=CODE["figure_pairing"],
    output:
        png=report("results/figures/pairing.png", caption="../report/pairing.rst", category="Figures"),
        pdf="results/figures/pairing.pdf",
        summary=report("results/tables/pairing_summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        **experiment_slice("pairing"),
        data=config_slice("data"),
    log:
        "results/logs/figure_pairing/pairing.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure_pairing.py"


rule exp2:
    input:
        experiment_outputs("exp2") if "exp2" in config["experiments"] else [],


rule exp3:
    input:
        experiment_outputs("exp3") if "exp3" in config["experiments"] else [],


rule ablation:
    input:
        experiment_outputs("ablation") if "ablation" in config["experiments"] else [],


rule pairing:
    input:
        experiment_outputs("pairing") if "pairing" in config["experiments"] else [],

localrules:
    table,
    figure,
    prediction_figure,


rule table:
    input:
        metrics=lambda w: run_files(w.experiment, "metrics.json"),
        histories=lambda w: run_files(w.experiment, "history.csv"),
        couplings=lambda w: coupled_files(w.experiment, "couplings.json"),
        code=CODE["table"],
    output:
        table=report(
            "results/tables/{experiment}.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
        history="results/tables/{experiment}_history.csv",
    log:
        "results/logs/table/{experiment}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/table.py"


# One rule for the figure of every synthetic experiment: workflow/scripts/figure.py picks the experiment's
# caption and plot, workflow/report/figure.rst its report caption.
rule figure:
    input:
        table="results/tables/{experiment}.csv",
        history="results/tables/{experiment}_history.csv",
        code=CODE["figure"],
    output:
        png=report("results/figures/{experiment}.png", caption="../report/figure.rst", category="Figures"),
        pdf="results/figures/{experiment}.pdf",
        summary=report("results/tables/{experiment}_summary.csv", caption="../report/summary.rst", category="Tables"),
    params:
        grid=lambda w: config_slice("experiments", w.experiment),
        solvers=lambda w: config_slice("solvers", keys=experiment_solvers(w.experiment)),
        data=config_slice("data"),
        extra=figure_extra,
        protocol=config["protocol"],
    wildcard_constraints:
        experiment="exp1|exp2|exp3|ablation|pairing",
    log:
        "results/logs/figure/{experiment}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure.py"


# Exp. 4.1's JKOnet* MLP runs predicted with the explicit and the implicit step (the same trained models).
rule prediction_figure:
    input:
        table="results/tables/exp1.csv",
        code=CODE["figure"] + ["workflow/scripts/prediction.py"],
    output:
        table=report("results/tables/prediction.csv", caption="../report/table.rst", category="Tables"),
        png=report("results/figures/prediction.png", caption="../report/prediction.rst", category="Figures"),
        pdf="results/figures/prediction.pdf",
    params:
        grid=config_slice("experiments", "exp1") if "exp1" in config["experiments"] else {},
        protocol=config["protocol"],
    log:
        "results/logs/figure/prediction.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/prediction.py"

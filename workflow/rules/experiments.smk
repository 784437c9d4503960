# The recovery table of Exp. 4.3 (general energies) and one target rule per experiment beyond Exp. 4.1
# (`snakemake exp2` builds that figure alone); the figures themselves come from rule figure (figures.smk).


localrules:
    exp2,
    exp3,
    ablation,
    pairing,


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

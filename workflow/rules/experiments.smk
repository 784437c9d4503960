# One target rule per experiment beyond Exp. 4.1 (`snakemake exp2` builds that figure alone); the figures
# themselves come from rule figure (figures.smk).


localrules:
    exp2,
    exp3,
    ablation,
    pairing,


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

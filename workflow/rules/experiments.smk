# Target rules, generated from the config: one per configured experiment (`snakemake exp2` builds that
# experiment's tables and figure alone; the figures come from rule figure in figures.smk), and `prediction`
# (Exp. 4.1's explicit-vs-implicit comparison) when exp1 is configured.
for _experiment in config["experiments"]:

    rule:
        name:
            _experiment
        input:
            experiment_outputs(_experiment),
        localrule: True


if prediction_outputs():

    rule prediction:
        input:
            prediction_outputs(),
        localrule: True

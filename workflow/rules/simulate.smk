rule simulate:
    input:
        code=CODE["simulate"],
    output:
        population=f"results/data/{DATASET}/population.npz",
        settings=f"results/data/{DATASET}/settings.json",
    log:
        f"results/logs/simulate/{DATASET}.log",
    benchmark:
        f"results/benchmarks/simulate/{DATASET}.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=lambda w: int(w.seed),
        run=simulation_run,
        simulation=config_slice("data", keys=["dt", "n_steps"]),
    script:
        "../scripts/simulate.py"


# Pairing `independent`: snapshot t of the t-th of T + 1 independent populations of the same dataset
# (jkonetstar.simulate.simulate_independent), beside the paired population of rule simulate.
rule simulate_independent:
    input:
        code=CODE["simulate"],
    output:
        population=f"results/data/{DATASET}/independent_population.npz",
        settings=f"results/data/{DATASET}/independent_settings.json",
    log:
        f"results/logs/simulate_independent/{DATASET}.log",
    benchmark:
        f"results/benchmarks/simulate_independent/{DATASET}.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=lambda w: int(w.seed),
        run=simulation_run,
        simulation=lambda w: {**config_slice("data", keys=["dt", "n_steps"]), "independent": True},
    script:
        "../scripts/simulate.py"

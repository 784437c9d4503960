rule simulate:
    input:
        code=CODE["simulate"],
    output:
        population=f"results/data/{DATASET}/population.npz",
        settings=f"results/data/{DATASET}/settings.json",
    params:
        simulation=config_slice("data", keys=["dt", "n_steps"]),
    log:
        f"results/logs/simulate/{DATASET}.log",
    benchmark:
        f"results/benchmarks/simulate/{DATASET}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate.py"

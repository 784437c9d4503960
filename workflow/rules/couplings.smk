rule couplings:
    input:
        population=pairing_population,
        code=CODE["couplings"],
    output:
        train=f"results/data/{COUPLED}/train_couplings.npz",
        test=f"results/data/{COUPLED}/test_population.npz",
        train_population=f"results/data/{COUPLED}/train_population.npz",
        density=f"results/data/{COUPLED}/density.npz",
        summary=f"results/data/{COUPLED}/couplings.json",
    params:
        split=config_slice("data", keys=["test_ratio", "split_by"]),
        couplings=coupling_settings,
        density=config_slice("density"),
    log:
        f"results/logs/couplings/{COUPLED}.log",
    benchmark:
        f"results/benchmarks/couplings/{COUPLED}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/ot.yaml"
    script:
        "../scripts/couplings.py"

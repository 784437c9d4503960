# One coupled dataset, synthetic (potential~.../pairing~.../ot~...) or real (dataset~<name>/seed~<s>): split,
# OT couplings of consecutive training snapshots, Gaussian-mixture densities. Their differences are params.
rule couplings:
    input:
        population=coupled_population,
        code=CODE["couplings"],
    output:
        train=f"results/data/{COUPLED}/train_couplings.npz",
        test=f"results/data/{COUPLED}/test_population.npz",
        train_population=f"results/data/{COUPLED}/train_population.npz",
        density=f"results/data/{COUPLED}/density.npz",
        summary=f"results/data/{COUPLED}/couplings.json",
    log:
        f"results/logs/couplings/{COUPLED}.log",
    benchmark:
        f"results/benchmarks/couplings/{COUPLED}.tsv"
    conda:
        "../../envs/ot.yaml"
    threads: 1
    resources:
        mem_mb=lambda w: 8000 if is_real(w) else 4000,
        runtime=30,
    params:
        seed=coupling_seed,
        pairing=coupling_pairing,
        given_split=is_real,
        split=split_settings,
        couplings=coupling_settings,
        density=density_settings,
    script:
        "../scripts/couplings.py"

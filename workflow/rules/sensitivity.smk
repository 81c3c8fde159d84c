rule sensitivity:
    input:
        unpack(
            lambda wildcards: {
                "attacks": round_attack_files(RUN.figure1_round),
                "recordings": artifact("clean_recordings"),
                **({"responses": artifact("round_responses", round=RUN.figure1_round)} if RUN.recorded_rounds else {}),
                **({"white_box": artifact("white_box")} if RUN.simulated else {}),
                **{f"features_{name}": path for name, path in unit_features().items()},
            }
        ),
    output:
        artifact("sensitivity"),
    log:
        log_file("sensitivity"),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    params:
        settings=science(config["sensitivity"]),
        seed=seed("bootstrap"),
    script:
        "../scripts/sensitivity.py"


rule figure1:
    input:
        rules.sensitivity.output[0],
    output:
        png=report(artifact("figure", number=1) + ".png", caption="../report/figure1.rst", category="Figures"),
        pdf=artifact("figure", number=1) + ".pdf",
        numbers=artifact("figure", number=1) + ".nc",
    log:
        log_file("figure1"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure1.py"


if RUN.depth_views:

    rule figure7:
        input:
            rules.sensitivity.output[0],
        output:
            png=report(artifact("figure", number=7) + ".png", caption="../report/figure7.rst", category="Figures"),
            pdf=artifact("figure", number=7) + ".pdf",
            numbers=artifact("figure", number=7) + ".nc",
        log:
            log_file("figure7"),
        localrule: True
        conda:
            "../../envs/figures.yaml"
        params:
            layers=layers_by_depth(config),
            own_layers={name: network_layer(config, name) for name in RUN.networks},
        script:
            "../scripts/figure7.py"

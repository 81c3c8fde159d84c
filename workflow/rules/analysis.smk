# s~(eps) with its interval for the brain and every network (neuroattack.analysis.sensitivity),
# from the last recorded round's attacks and responses and the network units' attacks; and its
# table for the report.


rule sensitivity:
    input:
        unpack(
            lambda wildcards: {
                "attacks": round_attack_files(RUN.figure1_round, subject=BRAIN_SUBJECT),
                "unit_attacks": [artifact("unit_attack", index=index) for index in RUN.attack_indices],
                "recordings": clean_recordings(subject=BRAIN_SUBJECT),
                **(
                    {"responses": brain_file("round_responses", round=RUN.figure1_round)}
                    if RUN.recorded_rounds
                    else {}
                ),
                **({"white_box": brain_file("white_box")} if RUN.simulated else {}),
                **measured_networks_sensitivity(RUN.figure1_round),
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


if IN_SILICO:

    # How much of each subject's white-box truth its black box recovers, round by round: the
    # brain's (in silico) and every network's measured as the brain (like_for_like); and the
    # brain's black box calibrated by the networks' ratios (a real brain's too).
    rule transfer_ratios:
        input:
            unpack(transfer_ratio_inputs),
        output:
            artifact("transfer"),
        log:
            log_file("transfer_ratios"),
        conda:
            "../../envs/compute.yaml"
        resources:
            **cpu_job(mem_mb=4000, runtime=10),
        params:
            subjects=[BRAIN, *RUN.subjects],
        script:
            "../scripts/transfer_ratios.py"


rule sensitivity_table:
    input:
        **({"transfer": artifact("transfer")} if IN_SILICO and RUN.recorded_rounds else {}),
        sensitivity=artifact("sensitivity"),
    output:
        table=report(
            artifact("sensitivity_table"),
            caption="../report/sensitivity_table.rst",
            category="Tables",
        ),
        # what the report's landing page opens on (report/workflow.rst)
        headline=artifact("headline"),
    log:
        log_file("sensitivity_table"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        # canonical (science): the networks' order in the config reruns nothing
        facts=science(
            {
                "layers": {name: network_layer(config, name) for name in config["networks"]},
                "norm": config["attack"]["norm"],
                "simulated": RUN.simulated,
                "rounds": RUN.recorded_rounds,
                "figure1_round": RUN.figure1_round,
            }
        ),
    script:
        "../scripts/sensitivity_table.py"

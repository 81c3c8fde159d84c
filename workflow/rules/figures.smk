# The paper's figures (neuroattack.figures), each a png (in the report, with its caption),
# a pdf and the numbers it plots (figure_outputs). Figures 1, 2 and 4 show the last recorded
# round of the loop.

EXAMPLE_SITES = 3  # sites shown in figure 2: the most, the median and the least sensitive


rule figure1:
    input:
        **({"transfer": artifact("transfer")} if IN_SILICO and RUN.recorded_rounds else {}),
        sensitivity=artifact("sensitivity"),
    output:
        **figure_outputs(1),
    log:
        log_file("figure1"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure1.py"


rule figure2:
    input:
        unpack(lambda wildcards: last_round_responses()),
        stimuli=artifact("stimuli"),
        recordings=clean_recordings(subject=BRAIN_SUBJECT),
        attacks=round_attack_files(RUN.figure1_round, subject=BRAIN_SUBJECT),
    output:
        **figure_outputs(2),
    log:
        log_file("figure2"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        sites=EXAMPLE_SITES,
    script:
        "../scripts/figure2.py"


rule figure3:
    input:
        artifact("preference"),
    output:
        **figure_outputs(3),
    log:
        log_file("figure3"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        sites=config["preference"]["figure_sites"],
    script:
        "../scripts/figure3.py"


rule figure4:
    input:
        unpack(coverage_brain_inputs),
        recordings=clean_recordings(subject=BRAIN_SUBJECT),
        attacks=round_attack_files(RUN.figure1_round, subject=BRAIN_SUBJECT),
        sensitivity=artifact("sensitivity"),
    output:
        **figure_outputs(4),
    log:
        log_file("figure4"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        bootstrap=config["sensitivity"]["bootstrap"],
        seed=seed("bootstrap"),
    script:
        "../scripts/figure4.py"


rule figure5:
    input:
        artifact("screening"),
    output:
        **figure_outputs(5),
    log:
        log_file("figure5"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure5.py"


rule figure6:
    input:
        [brain_file("round_sensitivity", round=number) for number in range(1, RUN.recorded_rounds + 1)],
    output:
        **figure_outputs(6),
    log:
        log_file("figure6"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure6.py"


if RUN.depth_views:

    # With networks measured as the brain, the transfer ratios: how much of its own truth each
    # bound by depth recovers, beside the brain's.
    rule figure7:
        input:
            **({"transfer": artifact("transfer")} if IN_SILICO and RUN.subjects and RUN.recorded_rounds else {}),
            sensitivity=artifact("sensitivity"),
        output:
            **figure_outputs(7),
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


rule figure8:
    input:
        responses=[brain_file("round_responses", round=number) for number in range(1, RUN.recorded_rounds + 1)],
        recordings=clean_recordings(subject=BRAIN_SUBJECT),
    output:
        **figure_outputs(8),
    log:
        log_file("figure8"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        bootstrap=config["sensitivity"]["bootstrap"],
        seed=seed("bootstrap"),
    script:
        "../scripts/figure8.py"

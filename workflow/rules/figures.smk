# Figures 2 (examples) and 4 (coverage), and the s~ table of figure 1 for the report.
# Like figure 1 they show the last recorded round of the loop. Every figure's png is marked for `snakemake --report` (category "Figures").

EXAMPLE_SITES = 3  # sites shown in figure 2: the most, the median and the least sensitive


rule figure2:
    input:
        unpack(
            lambda wildcards: (
                {"responses": artifact("round_responses", round=RUN.figure1_round)} if RUN.recorded_rounds else {}
            )
        ),
        stimuli=artifact("stimuli"),
        recordings=artifact("clean_recordings"),
        attacks=round_attack_files(RUN.figure1_round),
    output:
        png=report(artifact("figure", number=2) + ".png", caption="../report/figure2.rst", category="Figures"),
        pdf=artifact("figure", number=2) + ".pdf",
        numbers=artifact("figure", number=2) + ".nc",
    log:
        log_file("figure2"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    params:
        sites=EXAMPLE_SITES,
    script:
        "../scripts/figure2.py"


rule figure4:
    input:
        unpack(coverage_brain_inputs),
        recordings=artifact("clean_recordings"),
        attacks=round_attack_files(RUN.figure1_round),
        sensitivity=artifact("sensitivity"),
    output:
        png=report(artifact("figure", number=4) + ".png", caption="../report/figure4.rst", category="Figures"),
        pdf=artifact("figure", number=4) + ".pdf",
        numbers=artifact("figure", number=4) + ".nc",
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


rule sensitivity_table:
    input:
        artifact("sensitivity"),
    output:
        report(
            artifact("sensitivity_table"),
            caption="../report/sensitivity_table.rst",
            category="Tables",
        ),
    log:
        log_file("sensitivity_table"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/sensitivity_table.py"

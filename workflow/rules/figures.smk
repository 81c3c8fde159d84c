# Figures 2 (examples) and 4 (coverage), and the s~ table of figure 1 for the report.
# Like figure 1 they show the last recorded round of the loop. Every figure's png is marked for `snakemake --report` (category "Figures").

EXAMPLE_SITES = 3  # sites shown in figure 2: the most, the median and the least sensitive


rule figure2:
    input:
        unpack(lambda wildcards: {"responses": round_file(FIGURE1_ROUND, "responses.nc")} if HAS_RESPONSES else {}),
        stimuli=result("stimuli/stimuli.nc"),
        recordings=result("recordings/clean.nc"),
        attacks=round_attack_files(FIGURE1_ROUND),
    output:
        png=report(result("figures/figure2.png"), caption="../report/figure2.rst", category="Figures"),
        pdf=result("figures/figure2.pdf"),
        numbers=result("figures/figure2.nc"),
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
        recordings=result("recordings/clean.nc"),
        attacks=round_attack_files(FIGURE1_ROUND),
        sensitivity=result("sensitivity/sensitivity.nc"),
    output:
        png=report(result("figures/figure4.png"), caption="../report/figure4.rst", category="Figures"),
        pdf=result("figures/figure4.pdf"),
        numbers=result("figures/figure4.nc"),
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
        result("sensitivity/sensitivity.nc"),
    output:
        report(
            result("report/sensitivity_table.html"),
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

rule sensitivity:
    input:
        unpack(
            lambda wildcards: {
                "attacks": round_attack_files(FIGURE1_ROUND),
                "recordings": result("recordings/clean.nc"),
                **({"responses": round_file(FIGURE1_ROUND, "responses.nc")} if HAS_RESPONSES else {}),
                **({"white_box": result("validation/brain_white_box.nc")} if SIMULATED else {}),
                **{f"features_{name}": path for name, path in network_features().items()},
            }
        ),
    output:
        result("sensitivity/sensitivity.nc"),
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
        png=report(result("figures/figure1.png"), caption="../report/figure1.rst", category="Figures"),
        pdf=result("figures/figure1.pdf"),
        numbers=result("figures/figure1.nc"),
    log:
        log_file("figure1"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure1.py"

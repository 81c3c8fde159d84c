# The closed loop over recording rounds (figure 6): round r's site models are refitted on
# the clean recordings and every earlier round's; they attack the same clean images again;
# the round's perturbed and random-direction images are recorded (in silico by the brain,
# in the lab from recordings.perturbed). Round 1's attacks are attack_image's (attacks/),
# on site_models/, unless loop.ensemble names networks: then every round's site models are
# one file per member (ensemble/<network>.nc, each network's readout of the same sites) and
# every round attacks the members' mean response. With loop.refit: network, each
# member (the surrogate, or every ensemble network) is first fine-tuned for the round
# (rounds/round<r>/networks/<member>.nc) and its readouts are refitted on its new features.


rule finetune_surrogate:
    input:
        unpack(earlier_rounds),
        first=artifact("site_models"),
        weights=lambda wildcards: member_weights(wildcards.network),
        features=lambda wildcards: member_features(wildcards.network),
        recordings=artifact("clean_recordings"),
        stimuli=artifact("stimuli"),
    output:
        artifact("round_network"),
    log:
        log_file("finetune_surrogate/round{round}/{network}"),
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
        network=name_pattern(loop_members()),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    threads: 2
    resources:
        **gpu_job(mem_mb=8000, runtime=60),
    params:
        settings=science(config["loop"].get("finetune", {})),
        seed=lambda wildcards: seed("finetune", int(wildcards.round)),
    script:
        "../scripts/finetune_surrogate.py"


rule refit_site_models:
    input:
        unpack(earlier_rounds),
        first=artifact("site_models"),
        surrogate=lambda wildcards: [round_member_weights(wildcards.round, SURROGATE_MEMBER)],
        features=[surrogate_features()],
        recordings=artifact("clean_recordings"),
        stimuli=artifact("stimuli"),
    output:
        [artifact("round_site_models")],
    log:
        log_file("refit_site_models/round{round}"),
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    params:
        settings=science(config["surrogate"], drop=["network", "layer", "layers"]),
        seed=seed("site_model_folds"),
    script:
        "../scripts/refit_site_models.py"


if RUN.ensemble:

    # One job per round fits every member's readouts (the earlier rounds are read once).
    rule ensemble_site_models:
        input:
            unpack(earlier_rounds),
            first=artifact("site_models"),
            surrogate=lambda wildcards: [round_member_weights(wildcards.round, name) for name in RUN.ensemble],
            features=[surrogate_network_features(name) for name in RUN.ensemble],
            recordings=artifact("clean_recordings"),
            stimuli=artifact("stimuli"),
        output:
            [artifact("round_member_site_models", network=name) for name in RUN.ensemble],
        log:
            log_file("ensemble_site_models/round{round}"),
        priority: CHAIN
        conda:
            "../../envs/compute.yaml"
        resources:
            **cpu_job(mem_mb=8000, runtime=30),
        params:
            settings=science(config["surrogate"], drop=["network", "layer", "layers"]),
            seed=seed("site_model_folds"),
        script:
            "../scripts/refit_site_models.py"


rule attack_round:
    input:
        unpack(round_attack_inputs),
    output:
        [artifact("round_attack", index=index) for index in RUN.attack_indices],
    log:
        log_file("attack_round/round{round}"),
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    # One job per round: its images run side by side in threads (one torch thread each on
    # the CPU), which saves every image's start-up; Snakemake scales this down to --cores.
    threads: len(RUN.attack_indices)
    resources:
        # paper scale on one H200: about 2 minutes an image
        **gpu_job(mem_mb=8000, runtime=20 + 5 * len(RUN.attack_indices), chunk_rows=config["attack"]["chunk_rows"]),
    params:
        attack=science(config["attack"], drop=["images", "units_per_network", "layers"]),
        seeds=lambda wildcards: [
            {
                "attack_starts": seed("attack_starts", int(wildcards.round), int(index)),
                "model_baseline": seed("model_baseline", int(wildcards.round), int(index)),
            }
            for index in RUN.attack_indices
        ],
    script:
        "../scripts/attack_round.py"


rule round_stimuli:
    input:
        stimuli=artifact("stimuli"),
        attacks=lambda wildcards: round_attack_files(wildcards.round),
    output:
        artifact("round_stimuli"),
    log:
        log_file("round_stimuli/round{round}"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=10),
    params:
        seed=lambda wildcards: seed("random_directions", int(wildcards.round)),
        norm=config["attack"].get("norm", "l2"),
    script:
        "../scripts/round_stimuli.py"


rule round_responses:
    input:
        unpack(
            lambda wildcards: {
                "shown": artifact("round_stimuli"),
                "recordings": artifact("round_recordings"),
                "attacks": round_attack_files(wildcards.round),
                **({"brain": artifact("brain")} if RUN.simulated else {}),
            }
        ),
    output:
        artifact("round_responses"),
    log:
        log_file("round_responses/round{round}"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    script:
        "../scripts/round_responses.py"


rule round_sensitivity:
    input:
        unpack(
            lambda wildcards: {
                "attacks": round_attack_files(wildcards.round),
                "responses": artifact("round_responses", round=wildcards.round),
                "recordings": artifact("clean_recordings"),
                **({"white_box": artifact("white_box")} if RUN.simulated else {}),
            }
        ),
    output:
        artifact("round_sensitivity"),
    log:
        log_file("round_sensitivity/round{round}"),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    params:
        bootstrap=config["sensitivity"]["bootstrap"],
        seed=seed("bootstrap"),
    script:
        "../scripts/round_sensitivity.py"


rule figure6:
    input:
        round_sensitivity_files(),
    output:
        png=report(artifact("figure", number=6) + ".png", caption="../report/figure6.rst", category="Figures"),
        pdf=artifact("figure", number=6) + ".pdf",
        numbers=artifact("figure", number=6) + ".nc",
    log:
        log_file("figure6"),
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure6.py"


rule figure8:
    input:
        responses=[artifact("round_responses", round=number) for number in range(1, RUN.recorded_rounds + 1)],
        recordings=artifact("clean_recordings"),
    output:
        png=report(artifact("figure", number=8) + ".png", caption="../report/figure8.rst", category="Figures"),
        pdf=artifact("figure", number=8) + ".pdf",
        numbers=artifact("figure", number=8) + ".nc",
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

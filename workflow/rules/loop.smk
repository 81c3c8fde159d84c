# The closed loop over recording rounds (figure 6), every round alike: round r's site models,
# fitted on the clean recordings and every earlier round's (round 1's: on the clean recordings
# alone, site_models.smk), attack the same clean images (attack_round); the round's stimulus
# set (its perturbed and random-direction images) is recorded (in silico by the brain, in the
# lab through the rig); its responses and s~ follow. With loop.ensemble every round's site
# models are one file per member (ensemble/<network>.nc, each network's readout of the same
# sites) and every round attacks the members' mean response. With loop.refit: network, each
# member is first fine-tuned for the round (rounds/round<r>/networks/<member>.nc) and its
# readouts are refitted on its new features.

LATER_ROUND = r"[2-9]|[1-9]\d+"


rule finetune_member:
    input:
        unpack(refit_inputs),
        network=lambda wildcards: member_network(wildcards.network),
        features=lambda wildcards: member_features(wildcards.network),
    output:
        artifact("round_network"),
    log:
        log_file("{subject}finetune_member/round{round}/{network}"),
    wildcard_constraints:
        round=LATER_ROUND,
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
        "../scripts/finetune_member.py"


if RUN.ensemble:

    # One job per round fits every member's readouts (the earlier rounds are read once); round
    # 1's are fitted on the clean recordings alone, for round 1's sites. A network measured as
    # the brain has a rule of its own, whose members leave it out.
    for measured in [None, *RUN.subjects]:

        rule:
            name:
                "ensemble_site_models" if measured is None else f"ensemble_site_models_{rule_suffix(measured)}"
            input:
                unpack(lambda wildcards, folder=subject_folder(measured): refit_inputs(wildcards, folder)),
                members=lambda wildcards, measured=measured: [
                    round_member_network(wildcards.round, name, subject_folder(measured))
                    for name in loop_members(measured)
                ],
                features=[features_as_member(name) for name in loop_members(measured)],
            output:
                [
                    artifact("round_member_site_models", network=name, subject=subject_folder(measured))
                    for name in loop_members(measured)
                ],
            log:
                log_file(f"{subject_folder(measured)}ensemble_site_models/round{{round}}"),
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

else:

    rule refit_site_models:
        input:
            unpack(refit_inputs),
            members=lambda wildcards: [round_member_network(wildcards.round, SURROGATE_MEMBER)],
            features=[surrogate_features()],
        output:
            [artifact("round_site_models")],
        log:
            log_file("{subject}refit_site_models/round{round}"),
        wildcard_constraints:
            round=LATER_ROUND,
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


# Each job writes every image's file as soon as it is done and keeps a copy under finished/,
# which a rerun of the job reuses: a killed job (preempted, out of memory) loses only the image
# it was on. A job out of memory is retried (profile `retries`) with half the rows per batch.
for part, indices in enumerate(RUN.attack_parts):

    rule:
        name:
            attack_round_name(part)
        input:
            unpack(round_attack_inputs(indices)),
        output:
            [artifact("round_attack", index=index) for index in indices],
        log:
            log_file(
                f"{{subject}}attack_round/round{{round}}" + ("" if len(RUN.attack_parts) == 1 else f"_part{part + 1}")
            ),
        priority: CHAIN
        conda:
            "../../envs/compute.yaml"
        # its images run side by side in threads (one torch thread each on the CPU), which saves
        # every image's start-up; the round's jobs share the cores (jobs.round_part_threads)
        threads: round_part_threads(len(indices), len(RUN.attack_parts), given_cores())
        resources:
            # paper scale on one H200: about 2 minutes an image
            **gpu_job(mem_mb=8000, runtime=20 + 5 * len(indices), chunk_rows=config["attack"]["chunk_rows"]),
        params:
            attack=science(config["attack"], drop=["images", "units_per_network", "layers"]),
            images=[int(index) for index in indices],
            # rounds from 2 on (round 1 has nothing recorded before it)
            recorded_gradient=lambda wildcards: recorded_gradient_settings(config) if int(wildcards.round) > 1 else None,
            seeds=lambda wildcards, indices=indices: {
                "attacked_images": seed("attacked_images"),
                "per_image": image_seeds(wildcards.round, indices),
            },
        script:
            "../scripts/attack_round.py"


rule round_stimuli:
    input:
        stimuli=artifact("stimuli"),
        attacks=lambda wildcards: round_attack_files(wildcards.round),
    output:
        artifact("round_stimuli"),
    log:
        log_file("{subject}round_stimuli/round{round}"),
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


if IN_SILICO:

    # One rule records any stimulus set, the clean one or a round's, from the brain (or from a
    # network measured as the brain).
    rule record:
        input:
            brain=artifact("brain"),
            stimuli=recorded_stimuli,
        output:
            artifact("recordings"),
        log:
            log_file("{subject}record/{stimulus_set}"),
        wildcard_constraints:
            stimulus_set=r"clean|round[1-9]\d*",
            subject=IN_SILICO_SUBJECT,
        priority: CHAIN
        conda:
            "../../envs/compute.yaml"
        resources:
            **cpu_job(mem_mb=8000, runtime=30),
        params:
            # None: the brain file's (matched to the recorded sites')
            repetitions=lambda wildcards: None if matched_noise(wildcards) else config["brain"]["repetitions"],
            seed=recording_seed,
        script:
            "../scripts/record.py"


if not RUN.simulated:

    # With a lab's rig: each round's stimulus set goes out, its recordings come back.
    rule export_rig_stimuli:
        input:
            brain_file("round_stimuli"),
        output:
            multiext(artifact("round_rig_stimuli"), ".csv", ".zip"),
        log:
            log_file("export_rig_stimuli/round{round}"),
        localrule: True
        conda:
            "../../envs/compute.yaml"
        script:
            "../scripts/export_rig_stimuli.py"

    rule ingest_perturbed_recordings:
        input:
            table=lambda wildcards: RUN.perturbed_tables[int(wildcards.round) - 1],
            round_stimuli=brain_file("round_stimuli"),
            clean=clean_recordings(subject=BRAIN_SUBJECT),
            site_models=brain_file("round_site_models", round=1),
        output:
            brain_file("recordings", stimulus_set="round{round}"),
        log:
            log_file("ingest_perturbed_recordings/round{round}"),
        priority: CHAIN
        conda:
            "../../envs/compute.yaml"
        resources:
            **cpu_job(mem_mb=8000, runtime=30),
        script:
            "../scripts/ingest_perturbed_recordings.py"


rule round_responses:
    input:
        unpack(
            lambda wildcards: {
                "round_stimuli": artifact("round_stimuli"),
                "recordings": round_recordings(),
                "attacks": round_attack_files(wildcards.round),
                **({"brain": artifact("brain")} if in_silico(wildcards) else {}),
            }
        ),
    output:
        artifact("round_responses"),
    log:
        log_file("{subject}round_responses/round{round}"),
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
                "recordings": clean_recordings(),
                **({"white_box": artifact("white_box")} if in_silico(wildcards) else {}),
            }
        ),
    output:
        artifact("round_sensitivity"),
    log:
        log_file("{subject}round_sensitivity/round{round}"),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    params:
        bootstrap=config["sensitivity"]["bootstrap"],
        seed=seed("bootstrap"),
    script:
        "../scripts/round_sensitivity.py"

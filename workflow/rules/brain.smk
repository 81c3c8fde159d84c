# The in-silico monkey. Only record_clean and record_round observe it (through
# neuroattack.brain.simulated.record); brain_white_box reads its weights for validation only.


rule build_brain:
    input:
        network=artifact("network", network="brain"),
        stimuli=rules.stimuli.output[0],
    output:
        artifact("brain"),
    log:
        log_file("build_brain"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    params:
        brain=science(config["brain"], drop=["network", "repetitions", "seed"]),
        seed=seed("brain_readout"),
    script:
        "../scripts/build_brain.py"


rule record_clean:
    input:
        brain=rules.build_brain.output[0],
        stimuli=rules.stimuli.output[0],
    output:
        artifact("clean_recordings"),
    log:
        log_file("record_clean"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    params:
        repetitions=config["brain"]["repetitions"],
        seed=seed("recording_noise", 0),
    script:
        "../scripts/record_clean.py"


rule record_round:
    input:
        brain=rules.build_brain.output[0],
        shown=artifact("round_stimuli"),
    output:
        artifact("round_recordings"),
    log:
        log_file("record_round/round{round}"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    params:
        repetitions=config["brain"]["repetitions"],
        seed=lambda wildcards: seed("recording_noise", int(wildcards.round)),
    script:
        "../scripts/record_round.py"


rule brain_white_box:
    input:
        brain=rules.build_brain.output[0],
        stimuli=rules.stimuli.output[0],
    output:
        artifact("white_box"),
    log:
        log_file("brain_white_box"),
    conda:
        "../../envs/compute.yaml"
    # one thread: it runs beside the loop's chain of jobs, on the cores the chain leaves idle
    threads: 1
    resources:
        **gpu_job(mem_mb=8000, runtime=120, chunk_rows=config["attack"]["chunk_rows"]),
    params:
        attack=science(config["attack"], drop=["units_per_network", "layers", *TRANSFER_KEYS]),
        seeds={"attacked_images": seed("attacked_images"), "white_box_starts": seed("white_box_starts")},
    script:
        "../scripts/brain_white_box.py"

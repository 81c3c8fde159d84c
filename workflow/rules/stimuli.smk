# The stimulus set: the embedded photographs' crops, a Brain-Score stimulus set or a folder of
# the user's images (neuroattack.data.stimuli).


rule stimuli:
    input:
        unpack(stimuli_inputs),
    output:
        artifact("stimuli"),
    log:
        log_file("stimuli"),
    priority: FIRST
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=30),
    params:
        settings=science(config["stimuli"], drop=["csv", "zip", "path"]),
        seed=seed("crops"),
    script:
        "../scripts/stimuli.py"

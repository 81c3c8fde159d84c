# The stimulus set: the embedded photographs' crops, a Brain-Score stimulus set or a folder of
# the user's images (neuroattack.data.stimuli).


def stimuli_inputs(wildcards):
    stimuli = config["stimuli"]
    if stimuli["source"] == "brainscore":
        return {
            "csv": downloaded(config, download_name(stimuli["csv"], "brainscore")),
            "zip": downloaded(config, download_name(stimuli["zip"], "brainscore")),
        }
    if stimuli["source"] == "folder":
        return {"folder": stimuli["path"]}
    return {}


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

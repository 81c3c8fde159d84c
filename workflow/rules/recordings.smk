# Recordings from outside the workflow: a Brain-Score assembly or a lab's own table,
# converted into the project's recordings format; and the loop with a lab's rig.


rule import_recordings:
    input:
        unpack(recordings_inputs),
    output:
        artifact("clean_recordings"),
    log:
        log_file("import_recordings"),
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=16000, runtime=30),
    params:
        settings=recordings_settings(config),
    script:
        "../scripts/import_recordings.py"


rule export_rig_stimuli:
    input:
        artifact("round_stimuli"),
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
        shown=artifact("round_stimuli"),
        clean=artifact("clean_recordings"),
        site_models=artifact("site_models"),
    output:
        artifact("round_recordings"),
    log:
        log_file("ingest_perturbed_recordings/round{round}"),
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    script:
        "../scripts/ingest_perturbed_recordings.py"

# Recordings from outside the workflow: a Brain-Score assembly or a lab's own table, converted
# into the project's recordings format (neuroattack.data). A lab's later rounds come back
# from its rig through the loop (loop.smk, ingest_perturbed_recordings).


rule import_recordings:
    input:
        unpack(recordings_inputs),
    output:
        clean_recordings(subject=BRAIN_SUBJECT),
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

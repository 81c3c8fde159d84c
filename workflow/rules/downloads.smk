# Public inputs: streamed to a partial file, resumed, retried and checksummed
# (neuroattack.download). Local rules: a cluster's compute nodes may have no internet.


rule download:
    output:
        downloaded("{file}"),
    log:
        log_file("download/{file}"),
    wildcard_constraints:
        file=DOWNLOAD_PATTERN,
    localrule: True
    params:
        remote=lambda wildcards: science(DOWNLOADS[wildcards.file]),
    script:
        "../scripts/download.py"


rule convert_checkpoint:
    input:
        downloaded("checkpoints/{network}.ckpt"),
    output:
        result("networks/{network}.nc"),
    log:
        log_file("convert_checkpoint/{network}"),
    wildcard_constraints:
        network=DOWNLOADED_PATTERN,
    resources:
        **cpu_job(mem_mb=8000, runtime=20),
    params:
        eps=lambda wildcards: config["networks"][wildcards.network]["eps"],
    script:
        "../scripts/convert_checkpoint.py"

# Public inputs: streamed to a partial file, resumed, retried and checksummed, from the first of
# their mirrors that delivers them (neuroattack.download). Local rules: a cluster's compute nodes
# may have no internet. The params hold only the checksum, which identifies the file: the script
# reads the URLs from the config entry, so editing a mirror list never reruns a verified download.


rule download:
    output:
        # update: kept (not deleted) when the job reruns, e.g. after a checksum is pinned; the
        # script then verifies it in place and fetches nothing unless it does not match
        update(downloaded(config, "{file}")),
    log:
        log_file("download/{file}"),
    wildcard_constraints:
        file=name_pattern(DOWNLOADS),
    localrule: True
    conda:
        "../../envs/download.yaml"
    params:
        checksum=download_checksum,
        entry=lambda wildcards: DOWNLOADS[wildcards.file],
    script:
        "../scripts/download.py"

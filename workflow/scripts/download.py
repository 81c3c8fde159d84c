"""Rule download: one public input, resumable and checksummed."""

from neuroattack.download import download
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
remote = snakemake.params.remote
algorithm = "sha1" if "sha1" in remote else "sha256"
expected = remote.get(algorithm)
digest = download(remote["url"], snakemake.output[0], expected, algorithm, progress=log.info)
if expected is None:
    log.warning(
        "%s had no checksum in the config; recorded %s %s (add it to the config to pin this file)",
        remote["url"],
        algorithm,
        digest,
    )
log.info("%s verified (%s %s)", snakemake.output[0], algorithm, digest)

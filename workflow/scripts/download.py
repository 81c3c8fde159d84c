"""Rule download: one public input from the first of its mirrors that delivers it, resumable and checksummed."""

from neuroattack.config import config_entry
from neuroattack.download import download_from_mirrors
from neuroattack.remote import remote_checksum, remote_urls
from neuroattack.runtime import configure

log = configure(snakemake.log[0], snakemake.threads)
entry = ".".join(snakemake.params.entry)
urls = remote_urls(config_entry(snakemake.config, snakemake.params.entry))
algorithm, expected = remote_checksum(snakemake.params.checksum)
# The job runs only when the file is missing or forced: an unpinned copy is then fetched again.
digest = download_from_mirrors(urls, snakemake.output[0], expected, algorithm, progress=log.info, trust_recorded=False)
if expected is None:
    log.warning(
        "%s had no checksum in the config; recorded %s %s (add it to the config to pin this file)",
        entry,
        algorithm,
        digest,
    )
log.info("%s verified (%s %s)", snakemake.output[0], algorithm, digest)

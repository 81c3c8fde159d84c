"""A remote file of the config, and what identifies a downloaded file: its digest.

A remote-file entry is `{url or urls, sha1 or sha256, name}`: `remote_urls`,
`remote_checksum` and `remote_file_name` read it. The digest of a verified download is
kept beside it in a sidecar, `<dest>.<algorithm>`, in the format of `sha1sum`/`sha256sum`.
The standard library only: building the DAG imports this module.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

Algorithm = Literal["sha1", "sha256"]
DIGEST_LENGTHS = {"sha1": 40, "sha256": 64}
CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A download failed for good; the message names the URL and what to do."""


def sidecar_path(dest: str | os.PathLike[str], algorithm: Algorithm) -> Path:
    """Where the verified digest of `dest` is recorded: `<dest>.<algorithm>`."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.{algorithm}")


def file_digest(path: str | os.PathLike[str], algorithm: Algorithm) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(path: str | os.PathLike[str]) -> str:
    """The digest recorded in a sidecar file (first field of its first line)."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise DownloadError(
            f"{path}: empty checksum file; delete it and the file it describes, then run the same command again"
        )
    return text.split()[0].lower()


def write_sidecar(dest: str | os.PathLike[str], digest: str, algorithm: Algorithm) -> Path:
    """Record `digest` next to `dest` (atomic write, sha*sum format)."""
    target = sidecar_path(dest, algorithm)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(f"{digest}  {Path(dest).name}\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def remote_urls(remote: Mapping[str, Any]) -> list[str]:
    """The URLs of a config's remote-file entry, in the order they are tried: its
    `urls` (mirrors of one file), or its one `url`."""
    if ("url" in remote) == ("urls" in remote):
        raise ValueError(f"a remote file gives either 'url' or 'urls' (a list of mirrors), got keys {sorted(remote)}")
    urls = remote["urls"] if "urls" in remote else [remote["url"]]
    if isinstance(urls, str) or not urls or not all(isinstance(url, str) for url in urls):
        raise ValueError(f"'urls' must be a non-empty list of URLs, got {urls!r}")
    return list(urls)


def remote_checksum(remote: Mapping[str, Any]) -> tuple[Algorithm, str | None]:
    """(algorithm, expected digest or None) of a remote-file entry: its `sha1`, else
    its `sha256`; None (no key, or null) means: record the digest at first download."""
    if "sha1" in remote and "sha256" in remote:
        raise ValueError("a remote file gives one checksum, sha1 or sha256, not both")
    algorithm: Algorithm = "sha1" if "sha1" in remote else "sha256"
    value = remote.get(algorithm)
    return algorithm, None if value is None else str(value)


def remote_file_name(remote: Mapping[str, Any]) -> str:
    """Local file name of a remote-file entry: its `name`, else the last path segment
    of its first URL (query string excluded). Which mirror answers never changes it."""
    if remote.get("name"):
        name = str(remote["name"])
    else:
        first = remote_urls(remote)[0]
        name = urllib.parse.urlsplit(first).path.rsplit("/", 1)[-1]
        if not name:
            raise ValueError(f"{first}: the URL names no file (it ends in '/'); give the entry a 'name'")
    if "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a file name; give the entry a 'name' without '/'")
    return name


def refetch_advice(path: str | os.PathLike[str]) -> str:
    """What to do about a damaged downloaded file (tested in test_workflow.py)."""
    return (
        "the file is damaged or truncated: check its source, then download it again by running your snakemake "
        f"command again with --forcerun {os.fspath(path)}"
    )


def expected_digest(checksum: str, algorithm: str, url: str) -> str:
    """A configured checksum as a lower-case hex digest; ValueError naming `url` if it is not one."""
    expected = checksum.strip().lower()
    if not re.fullmatch(rf"[0-9a-f]{{{DIGEST_LENGTHS[algorithm]}}}", expected):
        raise ValueError(
            f"checksum {checksum!r} for {url} is not a {algorithm} hex digest "
            f"({DIGEST_LENGTHS[algorithm]} hex characters); check the config"
        )
    return expected


def kept_digest(
    dest: Path, expected: str | None, algorithm: Algorithm, say: Callable[[str], None], trust_recorded: bool = True
) -> str | None:
    """Digest of an already present `dest` if it can be kept, else None (and it is removed).
    Without an expected checksum the file is kept if it matches its sidecar, unless
    `trust_recorded` is off: then nothing identifies it as right, and it is fetched again."""
    if not dest.is_file():
        return None
    if expected is None and not trust_recorded:
        say(f"{dest}: no checksum pinned in the config; downloading it again")
        dest.unlink()
        sidecar_path(dest, algorithm).unlink(missing_ok=True)
        return None
    actual = file_digest(dest, algorithm)
    if expected is None:
        sidecar = sidecar_path(dest, algorithm)
        if sidecar.is_file():
            recorded = read_sidecar(sidecar)
            if recorded != actual:
                raise DownloadError(
                    f"{dest}: {algorithm} is {actual} but {sidecar} records {recorded}; the file changed "
                    "after it was downloaded. Delete both files and run the same command again to download it again"
                )
        return actual
    if actual == expected:
        return actual
    say(f"{dest}: {algorithm} {actual} does not match the expected {expected}; downloading it again")
    dest.unlink()
    return None

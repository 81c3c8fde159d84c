"""Checksummed, resumable downloads using only the standard library.

`download(url, dest, checksum, algorithm)` streams the body to `<dest>.part`,
resumes an interrupted transfer with an HTTP Range request, retries transient
failures (connection errors, timeouts, truncated bodies, HTTP 5xx and 429) with
exponential backoff up to a bounded count, verifies the checksum and only then
renames the file into place. `dest` therefore exists only once it is complete
and verified. A resumed transfer that fails verification is fetched once more
from byte 0 (the kept bytes may come from another version of the file); a
mismatch on a whole transfer deletes `<dest>.part` and raises DownloadError.

Sidecar: after every successful call the verified digest is written next to the
file as `<dest>.<algorithm>` (for example `data.nc.sha1`), one line in the
format of `sha1sum`/`sha256sum` (`<hex digest>  <file name>`), so
`sha1sum -c data.nc.sha1` checks it by hand. When the caller passes no checksum
the sidecar is the record of what was downloaded: a later call with no checksum
verifies the existing file against it instead of trusting it blindly.

An existing `dest` whose digest matches is never downloaded again, whatever its
timestamp says; an existing `dest` whose digest does not match is removed and
downloaded afresh.

A `file:///absolute/path` URL (a local or shared-filesystem mirror) takes the
same path: the file is streamed into `<dest>.part` (resuming at the part's
size), verified and renamed; the copy gets the mode a new file gets under the
umask, not the mirror's. A missing source file is an error naming its path, and
a URL that names `dest` itself never has it deleted.

Mirrors: `download_from_mirrors(urls, dest, ...)` takes several URLs of one file
(one checksum) and tries them in order until one delivers the file verified;
each failure is reported as it happens and the final error lists every mirror
and why it failed. `neuroattack.remote` reads a remote-file entry of the config and keeps the
digests and their sidecars.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from neuroattack import __version__
from neuroattack.remote import (
    CHUNK_BYTES,
    DIGEST_LENGTHS,
    Algorithm,
    DownloadError,
    expected_digest,
    file_digest,
    kept_digest,
    sidecar_path,
    write_sidecar,
)

MAX_BACKOFF_S = 60.0
USER_AGENT = f"neuroattack/{__version__} (+urllib)"


class _TransientError(Exception):
    """A failure worth retrying (connection trouble, truncated body, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def part_path(dest: str | os.PathLike[str]) -> Path:
    """Where an unfinished transfer of `dest` is kept: `<dest>.part`."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.part")


def local_path(url: str) -> Path:
    """The path a file:// URL names (percent-escapes decoded)."""
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))


def _check_arguments(url: str, checksum: str | None, algorithm: str, retries: int, timeout: float) -> str | None:
    if algorithm not in DIGEST_LENGTHS:
        raise ValueError(f"checksum algorithm {algorithm!r} is not supported: use 'sha1' or 'sha256'")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file"):
        raise ValueError(
            f"{url}: only http(s) and file URLs can be downloaded; for a local copy, give its path as "
            "file:///absolute/path/to/file"
        )
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        raise ValueError(
            f"{url}: a file URL names an absolute path on this machine, file:///absolute/path/to/file "
            "(three slashes; no host name)"
        )
    if retries < 0 or timeout <= 0:
        raise ValueError(f"retries must be >= 0 and timeout > 0 (got retries={retries}, timeout={timeout})")
    return None if checksum is None else expected_digest(checksum, algorithm, url)


def _check_source_is_not_dest(url: str, dest: Path, expected: str | None, algorithm: Algorithm) -> None:
    """A file:// URL naming `dest` itself is kept whatever its digest: it may be the only copy.

    A mismatch is reported instead of deleting the file, which kept_digest would do.
    """
    try:
        same = os.path.samefile(local_path(url), dest)
    except OSError:
        return  # one of the two does not exist (yet)
    if not same or expected is None:
        return
    actual = file_digest(dest, algorithm)
    if actual != expected:
        raise DownloadError(
            f"{url}: names the destination {dest} itself, whose {algorithm} is {actual}, not the expected "
            f"{expected}; the file was left in place. Fix the checksum in the config or replace the file"
        )


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total length) of a `Content-Range: bytes a-b/total` header."""
    if not value:
        return None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return first, total


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            break
        n_bytes /= 1024
    return f"{int(n_bytes)} B" if unit == "B" else f"{n_bytes:.1f} {unit}"


def _stream(
    read: Callable[[int], bytes],
    url: str,
    part: Path,
    offset: int,
    expected_end: int | None,
    say: Callable[[str], None],
    progress_interval_s: float,
) -> int:
    """Write what `read` yields to `part` (appending when offset > 0); the number of bytes written."""
    received = 0
    started = last_report = time.monotonic()
    try:
        with open(part, "ab" if offset else "wb") as handle:
            while True:
                block = read(CHUNK_BYTES)
                if not block:
                    break
                handle.write(block)
                received += len(block)
                now = time.monotonic()
                if now - last_report >= progress_interval_s:
                    last_report = now
                    rate = received / max(now - started, 1e-9)
                    total_text = f" of {_human(expected_end)}" if expected_end else ""
                    say(f"{url}: {_human(offset + received)}{total_text} ({_human(rate)}/s)")
    except (OSError, http.client.HTTPException) as error:
        raise _TransientError(f"transfer interrupted after {offset + received} bytes: {error}") from error
    return received


def _open_source(url: str, source: Path) -> BinaryIO:
    try:
        return open(source, "rb")
    except FileNotFoundError as error:
        raise DownloadError(
            f"{url}: no such file {source}; check the URL in the config (is the filesystem that holds "
            "it mounted on this machine?)"
        ) from error
    except (IsADirectoryError, PermissionError) as error:
        raise DownloadError(f"{url}: cannot read {source} ({error}); check the URL in the config") from error
    except OSError as error:
        raise _TransientError(f"cannot open {source}: {error}") from error


def _copy_local(url: str, part: Path, say: Callable[[str], None], progress_interval_s: float) -> bool:
    """One attempt at a file:// URL: copy the rest of the file into `part`, resuming from its size.

    Returns whether bytes from an earlier attempt were kept; raises DownloadError,
    naming the path, when the file is missing or unreadable, and _TransientError
    when reading or writing fails midway (a shared filesystem can hiccup).
    """
    source = local_path(url)
    with _open_source(url, source) as handle:
        size = os.fstat(handle.fileno()).st_size
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            say(f"{url}: {part} is longer than {source}; starting over")
            offset = 0
        handle.seek(offset)
        received = _stream(handle.read, url, part, offset, size, say, progress_interval_s)
    if offset + received < size:
        raise _TransientError(f"{source} shrank while it was copied: got {offset + received} of {size} bytes")
    return offset > 0


def _transfer(url: str, part: Path, timeout: float, say: Callable[[str], None], progress_interval_s: float) -> bool:
    """One attempt: fetch the rest of `url` into `part`, resuming from its current size.

    Returns, once the body is complete as far as the server's headers tell,
    whether bytes from an earlier attempt were kept (a resumed transfer);
    raises _TransientError for what a retry may fix and DownloadError otherwise.
    """
    if urllib.parse.urlsplit(url).scheme == "file":
        return _copy_local(url, part, say, progress_interval_s)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            _, total = _parse_content_range(error.headers.get("Content-Range"))
            if total == offset:
                return True  # the partial file already holds the whole body
            say(f"{url}: server refused to resume at byte {offset}; starting over")
            part.unlink()
            raise _TransientError(f"HTTP 416 at offset {offset}", retry_after=0.0) from error
        if error.code == 429 or error.code >= 500:
            raise _TransientError(
                f"HTTP {error.code} {error.reason}", _retry_after(error.headers.get("Retry-After"))
            ) from error
        raise DownloadError(
            f"{url}: HTTP {error.code} {error.reason}; check the URL in the config "
            "(the file may have moved) or download it by hand and give its checksum"
        ) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _TransientError(f"cannot connect: {error}") from error

    with response:
        status = response.status
        if offset and status == 206:
            first, total = _parse_content_range(response.headers.get("Content-Range"))
            if first != offset:
                say(f"{url}: server resumed at byte {first}, not {offset}; starting over")
                part.unlink()
                raise _TransientError("misplaced Content-Range", retry_after=0.0)
        else:
            if offset:
                say(f"{url}: server ignored the resume request (HTTP {status}); starting over")
            offset = 0
        length_header = response.headers.get("Content-Length")
        promised = int(length_header) if length_header and length_header.isdigit() else None
        expected_end = offset + promised if promised is not None else None
        received = _stream(response.read, url, part, offset, expected_end, say, progress_interval_s)
        if promised is not None and received < promised:
            raise _TransientError(f"body truncated: got {offset + received} of {expected_end} bytes", retry_after=None)
        return offset > 0


def _fetch(
    url: str,
    part: Path,
    retries: int,
    timeout: float,
    backoff_s: float,
    say: Callable[[str], None],
    progress_interval_s: float,
) -> bool:
    """Bring `part` to the full body, retrying transient failures.

    True if the last attempt kept bytes written before it (a resumed transfer).
    """
    attempt = 0
    while True:
        try:
            return _transfer(url, part, timeout, say, progress_interval_s)
        except _TransientError as error:
            if attempt >= retries:
                raise DownloadError(
                    f"{url}: gave up after {attempt + 1} attempt(s): {error}. Any partial file ({part}) is "
                    "kept, so running the same command again resumes; check the network and the URL"
                ) from error
            wait = error.retry_after if error.retry_after is not None else backoff_s * 2**attempt
            wait = min(wait, MAX_BACKOFF_S)
            say(f"{url}: {error}; retry {attempt + 1} of {retries} in {wait:.1f} s")
            time.sleep(wait)
            attempt += 1


def _fetch_verified(
    url: str,
    target: Path,
    expected: str | None,
    algorithm: Algorithm,
    retries: int,
    timeout: float,
    backoff_s: float,
    say: Callable[[str], None],
    progress_interval_s: float,
) -> str:
    """Fetch `url` into `target` through `<target>.part`, verify it and rename it into place."""
    part = part_path(target)
    if part.exists():
        say(f"{url}: resuming from {_human(part.stat().st_size)} already in {part}")
    else:
        say(f"{url}: downloading to {target}")
    resumed = _fetch(url, part, retries, timeout, backoff_s, say, progress_interval_s)
    actual = file_digest(part, algorithm)
    if expected is not None and actual != expected and resumed:
        # bytes kept from an earlier attempt may belong to another version of the file
        say(f"{url}: {algorithm} mismatch after resuming; downloading the whole file again")
        part.unlink()
        _fetch(url, part, retries, timeout, backoff_s, say, progress_interval_s)
        actual = file_digest(part, algorithm)
    if expected is not None and actual != expected:
        part.unlink()
        raise DownloadError(
            f"{url}: {algorithm} mismatch: expected {expected}, got {actual}. The download was deleted; "
            "the file on the server may have changed — check the URL and the checksum in the config"
        )
    os.replace(part, target)
    write_sidecar(target, actual, algorithm)
    if expected is None:
        say(f"{url}: no checksum given; {algorithm} {actual} recorded in {sidecar_path(target, algorithm)}")
    return actual


def download(
    url: str,
    dest: str | os.PathLike[str],
    checksum: str | None = None,
    algorithm: Algorithm = "sha256",
    retries: int = 5,
    timeout: float = 60.0,
    *,
    backoff_s: float = 2.0,
    progress: Callable[[str], None] | None = _stderr,
    progress_interval_s: float = 15.0,
) -> str:
    """Download `url` to `dest`, verify it and return its hex digest.

    checksum: the expected hex digest, or None to accept what arrives and record
        its digest in the sidecar `<dest>.<algorithm>` (the return value is the
        digest to put into the config).
    retries: how many times a transient failure is retried (attempts = retries + 1),
        waiting backoff_s * 2**n seconds (capped at 60 s, or the server's Retry-After).
    progress: called with one-line progress messages (stderr by default, at most
        one line per progress_interval_s while bytes flow); None for silence.
    Raises DownloadError, naming the URL, for a 4xx answer, a missing or unreadable
    file:// source, a body still truncated after the retries, or a checksum
    mismatch; `dest` is never left behind then.
    """
    return download_from_mirrors(
        [url],
        dest,
        checksum,
        algorithm,
        retries,
        timeout,
        backoff_s=backoff_s,
        progress=progress,
        progress_interval_s=progress_interval_s,
    )


def download_from_mirrors(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    checksum: str | None = None,
    algorithm: Algorithm = "sha256",
    retries: int = 5,
    timeout: float = 60.0,
    *,
    backoff_s: float = 2.0,
    progress: Callable[[str], None] | None = _stderr,
    progress_interval_s: float = 15.0,
    trust_recorded: bool = True,
) -> str:
    """Download one file from the first of `urls` (mirrors of it) that delivers it
    verified, to `dest`; return its hex digest. With `trust_recorded` off, an existing
    `dest` is kept only if it matches `checksum` (a rule that reruns the download of an
    unpinned file fetches it again).

    Every URL is checked before anything is fetched. An existing `dest` that
    verifies is kept and no mirror is contacted. Otherwise the mirrors are tried in
    order, each as `download` tries one URL (retries, resume, checksum); a mirror
    that fails for good (a 4xx answer, a checksum mismatch, a body still truncated
    after the retries, a missing file:// source) is reported through `progress`
    and the next one is tried. Bytes kept from a failed mirror are resumed from the
    next one only when a checksum verifies the result; without one the next mirror
    starts from byte 0. With one URL the error is that URL's own; with several,
    the DownloadError names every mirror and why it failed.
    """
    if isinstance(urls, str):
        raise TypeError("urls must be a list of URLs; for one URL call download()")
    if not urls:
        raise ValueError(f"no URL given for {dest}: list at least one")
    expected = None
    for url in urls:
        expected = _check_arguments(url, checksum, algorithm, retries, timeout)
    say = progress if progress is not None else (lambda _message: None)
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    for url in urls:
        if urllib.parse.urlsplit(url).scheme == "file":
            _check_source_is_not_dest(url, target, expected, algorithm)

    kept = kept_digest(target, expected, algorithm, say, trust_recorded)
    if kept is not None:
        write_sidecar(target, kept, algorithm)
        return kept

    failures: list[str] = []
    for index, url in enumerate(urls):
        if index:
            say(f"trying mirror {index + 1} of {len(urls)}: {url}")
        try:
            digest = _fetch_verified(
                url, target, expected, algorithm, retries, timeout, backoff_s, say, progress_interval_s
            )
        except DownloadError as error:
            if len(urls) == 1:
                raise
            failures.append(str(error))
            say(f"mirror {index + 1} of {len(urls)} failed: {error}")
            if expected is None:
                part_path(target).unlink(missing_ok=True)
            continue
        if index:
            say(f"{url}: delivered {target.name} (mirror {index + 1} of {len(urls)})")
        return digest
    listed = "\n".join(f"  {number}. {failure}" for number, failure in enumerate(failures, start=1))
    raise DownloadError(
        f"{target}: none of the {len(urls)} mirrors delivered it:\n{listed}\n"
        "Check the URLs in the config (a file may have moved: add its new location to the list), "
        "or download it by hand and give its path as a file:/// URL"
    )

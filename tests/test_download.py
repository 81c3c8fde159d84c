"""download(): checksums, resume, retries and failures against a loopback server."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopback_server import LoopbackServer, loopback_server  # noqa: F401  (pytest fixture)

from neuroattack.download import download, download_from_mirrors, part_path
from neuroattack.remote import (
    DownloadError,
    read_sidecar,
    remote_checksum,
    remote_file_name,
    remote_urls,
    sidecar_path,
)

PAYLOAD = os.urandom(300_000) + b"tail"
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()  # the published Brain-Score checksums are sha1
FAST = {"backoff_s": 0.0, "progress": None, "timeout": 10.0}


@pytest.fixture
def served(loopback_server: LoopbackServer) -> LoopbackServer:  # noqa: F811
    (loopback_server.root / "data.bin").write_bytes(PAYLOAD)
    return loopback_server


def test_sha256_download_verifies_and_writes_sidecar(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "data.bin"
    digest = download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST)
    assert digest == SHA256
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert read_sidecar(sidecar_path(dest, "sha256")) == SHA256
    assert sidecar_path(dest, "sha256").read_text() == f"{SHA256}  data.bin\n"


def test_sha1_download(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    assert download(served.url("data.bin"), dest, SHA1.upper(), "sha1", retries=0, **FAST) == SHA1
    assert read_sidecar(sidecar_path(dest, "sha1")) == SHA1


def test_checksum_mismatch_leaves_no_file(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as caught:
        download(served.url("data.bin"), dest, wrong, "sha256", retries=0, **FAST)
    message = str(caught.value)
    assert served.url("data.bin") in message and wrong in message and SHA256 in message
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_404_raises_naming_the_url(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "nothing.bin"
    with pytest.raises(DownloadError, match="404") as caught:
        download(served.url("nothing.bin"), dest, SHA256, "sha256", retries=3, **FAST)
    assert served.url("nothing.bin") in str(caught.value)
    assert not dest.exists()
    assert len(served.requests) == 1  # a 4xx is not retried


def test_forced_404_on_existing_path(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.missing = {"/data.bin"}
    with pytest.raises(DownloadError, match="404"):
        download(served.url("data.bin"), tmp_path / "data.bin", SHA256, "sha256", retries=0, **FAST)


def test_truncated_transfer_resumes_with_range(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.truncate_after = 100_000
    dest = tmp_path / "data.bin"
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=2, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD
    assert [r.range for r in served.requests] == [None, "bytes=100000-"]


def test_truncation_beyond_retries_fails_and_keeps_part(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.truncate_after = 1_000
    served.faults.truncate_times = 10
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="truncated") as caught:
        download(served.url("data.bin"), dest, SHA256, "sha256", retries=2, **FAST)
    assert served.url("data.bin") in str(caught.value)
    assert not dest.exists()
    assert len(served.requests) == 3
    # what arrived is kept so that a later run resumes rather than restarts
    assert part_path(dest).read_bytes() == PAYLOAD[:3_000]
    served.faults.truncate_times = 0
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert served.requests[-1].range == "bytes=3000-"


def test_resume_of_preexisting_part(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD[:123_456])
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD
    assert [r.range for r in served.requests] == ["bytes=123456-"]


def test_server_ignoring_range_restarts_from_scratch(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.ignore_range = True
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD[:5_000])
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_verified(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD)
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD


def test_stale_part_is_replaced_by_a_full_download(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(b"X" * 1_000)  # wrong bytes: resuming cannot fix them
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD
    assert [r.range for r in served.requests] == ["bytes=1000-", None]


def test_mismatch_after_resume_and_refetch_deletes_part(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD[:1_000])
    with pytest.raises(DownloadError, match="mismatch"):
        download(served.url("data.bin"), dest, "1" * 64, "sha256", retries=0, **FAST)
    assert not part_path(dest).exists() and not dest.exists()
    assert [r.range for r in served.requests] == ["bytes=1000-", None]


def test_503_is_retried(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.fail_times = 2
    dest = tmp_path / "data.bin"
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=2, **FAST) == SHA256
    assert len(served.requests) == 3


def test_503_beyond_retries_fails(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.fail_times = 5
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="503"):
        download(served.url("data.bin"), dest, SHA256, "sha256", retries=1, **FAST)
    assert not dest.exists()
    assert len(served.requests) == 2


def test_429_is_retried(served: LoopbackServer, tmp_path: Path) -> None:
    served.faults.fail_times, served.faults.fail_status = 1, 429
    assert download(served.url("data.bin"), tmp_path / "d.bin", SHA256, "sha256", retries=1, **FAST) == SHA256


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    server = LoopbackServer(tmp_path).start()
    url = server.url("data.bin")
    server.stop()  # nothing listens on the port any more
    with pytest.raises(DownloadError, match="2 attempt"):
        download(url, tmp_path / "data.bin", SHA256, "sha256", retries=1, **FAST)


def test_verified_file_is_not_downloaded_again(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST)
    served.requests.clear()
    os.utime(dest, (1_000_000, 1_000_000))  # an old timestamp must not matter
    sidecar_path(dest, "sha256").unlink()
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert served.requests == []
    assert sidecar_path(dest, "sha256").exists()


def test_existing_file_with_wrong_content_is_replaced(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"stale")
    assert download(served.url("data.bin"), dest, SHA256, "sha256", retries=0, **FAST) == SHA256
    assert dest.read_bytes() == PAYLOAD


def test_missing_checksum_is_computed_and_recorded(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    messages: list[str] = []
    options = {**FAST, "progress": messages.append}
    assert download(served.url("data.bin"), dest, None, "sha1", retries=0, **options) == SHA1
    assert read_sidecar(sidecar_path(dest, "sha1")) == SHA1
    assert any(SHA1 in m for m in messages)
    # a second call trusts the recorded digest and makes no request
    served.requests.clear()
    assert download(served.url("data.bin"), dest, None, "sha1", retries=0, **FAST) == SHA1
    assert served.requests == []
    # a file changed after it was recorded is reported, not silently accepted
    dest.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="changed"):
        download(served.url("data.bin"), dest, None, "sha1", retries=0, **FAST)


def test_progress_messages_are_rate_limited(served: LoopbackServer, tmp_path: Path) -> None:
    messages: list[str] = []
    options = {**FAST, "progress": messages.append, "progress_interval_s": 3600.0}
    download(served.url("data.bin"), tmp_path / "data.bin", SHA256, "sha256", retries=0, **options)
    assert len(messages) == 1 and "downloading to" in messages[0]  # no progress lines in between
    messages.clear()
    options["progress_interval_s"] = 0.0
    download(served.url("data.bin"), tmp_path / "again.bin", SHA256, "sha256", retries=0, **options)
    assert any("KiB of 293.0 KiB" in m for m in messages)


@pytest.mark.parametrize(
    ("checksum", "algorithm", "url"),
    [
        ("abc", "sha256", "http://127.0.0.1/x"),
        (SHA256, "md5", "http://127.0.0.1/x"),
        (SHA1, "sha256", "http://127.0.0.1/x"),
        (SHA256, "sha256", "ftp://example.org/x"),
        (SHA256, "sha256", "file://example.org/x"),
        (SHA256, "sha256", "file:relative/x"),
    ],
)
def test_bad_arguments_are_refused(checksum: str, algorithm: str, url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download(url, tmp_path / "x", checksum, algorithm, **FAST)  # type: ignore[arg-type]


# ------------------------------------------------------------------- file:// URLs


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A local mirror holding the payload under a name that needs percent-escaping."""
    source = tmp_path / "mirror dir" / "data #1.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    return source


def test_file_url_is_copied_and_verified(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "data.bin"
    assert download(mirror.as_uri(), dest, SHA1, "sha1", retries=0, **FAST) == SHA1
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert read_sidecar(sidecar_path(dest, "sha1")) == SHA1
    assert mirror.read_bytes() == PAYLOAD  # the source is left alone


def test_file_url_with_localhost_and_no_checksum(mirror: Path, tmp_path: Path) -> None:
    url = mirror.as_uri().replace("file://", "file://localhost", 1)
    dest = tmp_path / "data.bin"
    assert download(url, dest, None, "sha256", retries=0, **FAST) == SHA256
    assert read_sidecar(sidecar_path(dest, "sha256")) == SHA256


def test_file_url_checksum_mismatch_leaves_no_file(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    wrong = "0" * 40
    with pytest.raises(DownloadError, match="mismatch") as caught:
        download(mirror.as_uri(), dest, wrong, "sha1", retries=0, **FAST)
    message = str(caught.value)
    assert mirror.as_uri() in message and wrong in message and SHA1 in message
    assert not dest.exists() and not part_path(dest).exists()
    assert not sidecar_path(dest, "sha1").exists()
    assert mirror.read_bytes() == PAYLOAD


def test_file_url_changed_mirror_does_not_touch_a_verified_dest(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    download(mirror.as_uri(), dest, SHA1, "sha1", retries=0, **FAST)
    mirror.write_bytes(b"another version")  # the mirror no longer matches the checksum
    assert download(mirror.as_uri(), dest, SHA1, "sha1", retries=0, **FAST) == SHA1
    assert dest.read_bytes() == PAYLOAD
    # fetched afresh, the changed mirror fails and the earlier correct copy is not replaced
    other = tmp_path / "other.bin"
    with pytest.raises(DownloadError, match="mismatch"):
        download(mirror.as_uri(), other, SHA1, "sha1", retries=0, **FAST)
    assert not other.exists()
    assert dest.read_bytes() == PAYLOAD


def test_an_unpinned_copy_is_fetched_again_unless_recorded_digests_are_trusted(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    download_from_mirrors([mirror.as_uri()], dest, None, "sha256", retries=0, **FAST)
    mirror.write_bytes(b"a repaired version")  # e.g. the first copy came truncated
    kept = download_from_mirrors([mirror.as_uri()], dest, None, "sha256", retries=0, **FAST)
    assert kept == SHA256 and dest.read_bytes() == PAYLOAD  # the recorded digest vouches for it
    fresh = download_from_mirrors([mirror.as_uri()], dest, None, "sha256", retries=0, trust_recorded=False, **FAST)
    assert dest.read_bytes() == b"a repaired version" and read_sidecar(sidecar_path(dest, "sha256")) == fresh
    pinned = download_from_mirrors([mirror.as_uri()], dest, fresh, "sha256", retries=0, trust_recorded=False, **FAST)
    assert pinned == fresh  # a pinned, matching copy is kept whatever


def test_file_url_naming_dest_itself_is_never_deleted(mirror: Path) -> None:
    with pytest.raises(DownloadError, match="left in place") as caught:
        download(mirror.as_uri(), mirror, "0" * 40, "sha1", retries=0, **FAST)
    assert mirror.as_uri() in str(caught.value)
    assert mirror.read_bytes() == PAYLOAD
    assert download(mirror.as_uri(), mirror, SHA1, "sha1", retries=0, **FAST) == SHA1
    assert mirror.read_bytes() == PAYLOAD


def test_file_url_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "mirror" / "absent.bin"
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="no such file") as caught:
        download(missing.as_uri(), dest, SHA1, "sha1", retries=3, **FAST)
    assert str(missing) in str(caught.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_file_url_naming_a_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        download(tmp_path.as_uri(), tmp_path / "data.bin", SHA1, "sha1", retries=3, **FAST)
    assert str(tmp_path) in str(caught.value)


def test_file_url_resumes_a_part(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD[:100_000])
    messages: list[str] = []
    options = {**FAST, "progress": messages.append}
    assert download(mirror.as_uri(), dest, SHA1, "sha1", retries=0, **options) == SHA1
    assert dest.read_bytes() == PAYLOAD
    assert any("resuming" in m for m in messages)


@pytest.mark.parametrize("part_bytes", [b"X" * 1_000, PAYLOAD + b"extra"], ids=["stale", "too-long"])
def test_file_url_bad_part_is_replaced(part_bytes: bytes, mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(part_bytes)
    assert download(mirror.as_uri(), dest, SHA1, "sha1", retries=0, **FAST) == SHA1
    assert dest.read_bytes() == PAYLOAD


# ------------------------------------------------------------------------- mirrors


def test_first_mirror_404_second_serves(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    messages: list[str] = []
    urls = [served.url("moved/data.bin"), served.url("data.bin")]
    digest = download_from_mirrors(urls, dest, SHA1, "sha1", retries=2, **{**FAST, "progress": messages.append})
    assert digest == SHA1 and dest.read_bytes() == PAYLOAD
    assert [r.path for r in served.requests] == ["/moved/data.bin", "/data.bin"]  # a 404 is not retried
    failed = [m for m in messages if "mirror 1 of 2 failed" in m]
    assert len(failed) == 1 and "404" in failed[0] and urls[0] in failed[0]
    assert any("trying mirror 2 of 2" in m for m in messages)
    assert read_sidecar(sidecar_path(dest, "sha1")) == SHA1


def test_checksum_mismatch_on_one_mirror_is_reported_and_the_next_is_tried(
    served: LoopbackServer, tmp_path: Path
) -> None:
    (served.root / "other.bin").write_bytes(b"another version of the file")
    dest = tmp_path / "data.bin"
    messages: list[str] = []
    urls = [served.url("other.bin"), served.url("data.bin")]
    assert download_from_mirrors(urls, dest, SHA256, retries=0, **{**FAST, "progress": messages.append}) == SHA256
    assert dest.read_bytes() == PAYLOAD
    assert any("mirror 1 of 2 failed" in m and "mismatch" in m for m in messages)
    assert not part_path(dest).exists()


def test_all_mirrors_failing_give_one_error_naming_each(served: LoopbackServer, tmp_path: Path) -> None:
    (served.root / "other.bin").write_bytes(b"another version of the file")
    refused = LoopbackServer(tmp_path).start()
    dead = refused.url("data.bin")
    refused.stop()
    local = tmp_path / "mirror" / "absent.bin"
    urls = [served.url("gone.bin"), served.url("other.bin"), dead, local.as_uri()]
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as caught:
        download_from_mirrors(urls, dest, SHA256, retries=1, **FAST)
    message = str(caught.value)
    lines = message.splitlines()
    assert "none of the 4 mirrors" in lines[0] and str(dest) in lines[0]
    for number, (url, reason) in enumerate(
        zip(urls, ["404", "mismatch", "gave up after 2 attempt", "no such file"], strict=True), start=1
    ):
        assert lines[number].startswith(f"  {number}. {url}") and reason in lines[number], lines[number]
    assert not dest.exists() and not sidecar_path(dest, "sha256").exists()


def test_a_verified_file_contacts_no_mirror(served: LoopbackServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    urls = [served.url("gone.bin"), served.url("data.bin")]
    assert download_from_mirrors(urls, dest, SHA256, retries=0, **FAST) == SHA256
    assert served.requests == []


@pytest.mark.parametrize("checksum", [SHA256, None], ids=["checksum", "no-checksum"])
def test_bytes_from_a_failed_mirror_are_resumed_only_under_a_checksum(
    checksum: str | None, served: LoopbackServer, mirror: Path, tmp_path: Path
) -> None:
    served.faults.truncate_after, served.faults.truncate_times = 100_000, 10
    dest = tmp_path / "data.bin"
    messages: list[str] = []
    urls = [served.url("data.bin"), mirror.as_uri()]
    options = {**FAST, "progress": messages.append}
    assert download_from_mirrors(urls, dest, checksum, "sha256", retries=0, **options) == SHA256
    assert dest.read_bytes() == PAYLOAD
    resumed = any("resuming from" in m for m in messages)
    assert resumed == (checksum is not None)


def test_mirror_arguments_are_all_checked_before_any_transfer(served: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ftp://"):
        download_from_mirrors([served.url("data.bin"), "ftp://example.org/x"], tmp_path / "x", SHA256, **FAST)
    with pytest.raises(ValueError, match="no URL"):
        download_from_mirrors([], tmp_path / "x", SHA256, **FAST)
    with pytest.raises(TypeError):
        download_from_mirrors(served.url("data.bin"), tmp_path / "x", SHA256, **FAST)
    assert served.requests == []


def test_remote_file_entries() -> None:
    one = {"url": "https://a.org/x/image_dicarlo_hvm-public.csv?versionId=abc", "sha1": SHA1}
    mirrors = {"urls": ["https://b.org/stimulus_hvm-public.csv", one["url"]], "sha1": SHA1}
    assert remote_urls(one) == [one["url"]]
    assert remote_urls(mirrors) == mirrors["urls"]
    assert remote_file_name(one) == "image_dicarlo_hvm-public.csv"
    assert remote_file_name(mirrors) == "stimulus_hvm-public.csv"  # the first URL's, whichever answers
    assert remote_file_name({**mirrors, "name": "hvm.csv"}) == "hvm.csv"
    assert remote_checksum(one) == ("sha1", SHA1)
    assert remote_checksum({"url": "file:///x", "sha256": None}) == ("sha256", None)
    assert remote_checksum({"url": "file:///x"}) == ("sha256", None)
    for bad in ({"url": "x", "urls": ["x"]}, {}, {"urls": []}, {"urls": "https://a.org/x"}):
        with pytest.raises(ValueError):
            remote_urls(bad)
    with pytest.raises(ValueError, match="not both"):
        remote_checksum({"url": "x", "sha1": SHA1, "sha256": SHA256})
    with pytest.raises(ValueError, match="name"):
        remote_file_name({"url": "https://a.org/folder/"})
    with pytest.raises(ValueError, match="name"):
        remote_file_name({"url": "https://a.org/x", "name": "a/b"})


# ------------------------------------------------------------------------ file modes


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)], ids=["022", "077"])
def test_downloaded_files_follow_the_umask(
    mask: int, expected: int, served: LoopbackServer, mirror: Path, tmp_path: Path
) -> None:
    mirror.chmod(0o400)  # the copy gets the umask's mode, not the mirror's
    with umask(mask):
        for url, name in ((served.url("data.bin"), "http.bin"), (mirror.as_uri(), "file.bin")):
            dest = tmp_path / name
            download(url, dest, SHA256, "sha256", retries=0, **FAST)
            assert mode(dest) == expected
            assert mode(sidecar_path(dest, "sha256")) == expected

"""netCDF I/O: round trips, conventions, provenance, atomic writes, file modes."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neuroattack import io
from neuroattack.remote import file_digest


def sample() -> xr.Dataset:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "response": (("stimulus_id", "neuroid"), rng.normal(size=(4, 3))),
            "pixels": (("stimulus_id", "y"), rng.integers(0, 255, size=(4, 5)).astype(np.uint8)),
            "flag": ("neuroid", np.array([True, False, True])),
        },
        coords={
            "stimulus_id": ["a", "b", "c", "d"],
            "neuroid": [0, 1, 2],
            "region": ("neuroid", ["IT", "IT", "V4"]),
            "eps": ("stimulus_id", [0.1, 0.2, 0.3, 0.4]),
        },
        attrs={"time_window_start_ms": 70, "label": "x", "widths": [16, 32], "ok": True},
    )
    ds["response"].attrs = {"units": "count"}
    return ds


def test_round_trip_keeps_values_dims_coords_and_attrs(tmp_path: Path) -> None:
    original = sample()
    path = io.write_dataset(original, tmp_path / "x.nc", "test", "unit test")
    loaded = io.read_dataset(path)
    assert loaded["response"].dims == ("stimulus_id", "neuroid")
    np.testing.assert_allclose(loaded["response"].values, original["response"].values.astype(np.float32))
    np.testing.assert_array_equal(loaded["pixels"].values, original["pixels"].values)
    assert loaded["pixels"].dtype == np.uint8
    assert loaded["stimulus_id"].values.tolist() == ["a", "b", "c", "d"]
    assert loaded["region"].values.tolist() == ["IT", "IT", "V4"]
    assert loaded["flag"].values.tolist() == [1, 0, 1]
    assert loaded.attrs["time_window_start_ms"] == 70 and loaded.attrs["label"] == "x"
    assert loaded.attrs["widths"].tolist() == [16, 32] and loaded.attrs["ok"] == 1
    assert loaded["response"].attrs["units"] == "count"


def test_conventions_compression_float32_and_no_fill_value_on_coords(tmp_path: Path) -> None:
    inputs = tmp_path / "input.txt"
    inputs.write_text("hello")
    path = io.write_dataset(sample(), tmp_path / "x.nc", "a title", "a source", inputs=[inputs], config={"k": 1})
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        assert nc.Conventions.startswith("CF-") and nc.title == "a title" and nc.source == "a source"
        assert "neuroattack" in nc.history and nc.config_hash == io.config_hash({"k": 1})
        assert json.loads(nc.input_checksums_sha256) == {str(inputs): file_digest(inputs, "sha256")}
        assert nc["response"].dtype == np.float32
        assert nc["response"].filters()["zlib"] is True
        for coord in ("eps", "neuroid"):
            assert "_FillValue" not in nc[coord].ncattrs()


def test_multiindex_is_reset_before_writing(tmp_path: Path) -> None:
    index = pd.MultiIndex.from_arrays([["a", "a", "b"], [0, 1, 0]], names=["stimulus_id", "repetition"])
    coords = xr.Coordinates.from_pandas_multiindex(index, "presentation")
    ds = xr.Dataset({"response": ("presentation", [1.0, 2.0, 3.0])}, coords=coords)
    loaded = io.read_dataset(io.write_dataset(ds, tmp_path / "m.nc", "t", "s"))
    assert loaded["stimulus_id"].values.tolist() == ["a", "a", "b"]
    assert loaded["repetition"].values.tolist() == [0, 1, 0]


def test_failed_write_leaves_existing_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "x.nc"
    io.write_dataset(sample(), target, "first", "s")
    before = target.read_bytes()
    bad = sample()
    bad["broken"] = ("neuroid", np.array([object(), object(), object()], dtype=object))
    with pytest.raises(ValueError, match="broken"):
        io.write_dataset(bad, target, "second", "s")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.nc"]


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.nc"):
        io.read_dataset(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(OSError, match=r"junk\.nc"):
        io.read_dataset(junk)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_written_file_mode_follows_the_umask(mask: int, mode: int, tmp_path: Path) -> None:
    with umask(mask):
        path = io.write_dataset(sample(), tmp_path / "x.nc", "t", "s")
        assert stat.S_IMODE(path.stat().st_mode) == mode
        # rewriting an existing file gives the same mode, and the umask is left as it was
        io.write_dataset(sample(), path, "t", "s")
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert os.umask(mask) == mask


# --- reading intermediates: what their readers need, and what to do when it is missing ---------


def test_an_intermediate_of_the_wrong_schema_names_file_missing_rule_and_command(tmp_path: Path) -> None:
    not_stimuli = sample().drop_vars("pixels")  # a valid netCDF file, but not a stimulus set
    path = io.write_dataset(not_stimuli, tmp_path / "stimuli.nc", "t", "s")
    with pytest.raises(ValueError) as caught:
        io.read_dataset(path, "stimuli")
    message = str(caught.value)
    assert message.startswith(f"{path}: not a stimuli file")
    assert "variable(s) pixels, category" in message and "dimension(s) y, x, channel" in message
    assert "rule stimuli" in message and f"--forcerun {path}" in message
    assert io.read_dataset(path)["response"].shape == (4, 3)  # without a kind, only readability counts


def test_an_unreadable_or_missing_intermediate_names_its_rule_and_command(tmp_path: Path) -> None:
    junk = tmp_path / "site_models.nc"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(
        OSError,
        match=r"rule site_models \(or refit_site_models, ensemble_site_models\): run your snakemake command again "
        r"with --forcerun .*\.nc",
    ):
        io.read_dataset(junk, "site_models")
    with pytest.raises(FileNotFoundError, match=r"rule attack_round: .*--forcerun .*image0001\.nc"):
        io.read_dataset(tmp_path / "image0001.nc", "site_attack")
    with pytest.raises(ValueError, match="unknown kind"):
        io.read_dataset(junk, "stimulus")  # type: ignore[arg-type]


def test_every_kind_of_intermediate_names_rules_of_the_workflow() -> None:
    snakefiles = "".join(path.read_text() for path in (Path(__file__).parent.parent / "workflow/rules").glob("*.smk"))
    defined = set(re.findall(r"^\s*rule (\w+):", snakefiles, flags=re.MULTILINE))
    # and the rules named in a loop (a round's attack jobs, the ensemble's fits), as the tiny
    # config (one surrogate) and the default (an ensemble) define them
    for config in ("config/tiny.yaml", "config/config.yaml"):
        listed = subprocess.run(
            [str(Path(sys.executable).with_name("snakemake")), "--list-rules", "--configfile", config],
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        defined |= set(listed.stdout.split())
    for name, kind in io.INTERMEDIATES.items():
        assert kind.variables or kind.attrs, name
        assert set(kind.rules) <= defined, (name, set(kind.rules) - defined)
    assert (
        io.INTERMEDIATES["network"].made_by
        == "rule train_network (or convert_checkpoint, import_network, chosen_surrogate, finetune_member)"
    )


def test_temporaries_of_a_killed_write_are_removed_by_the_next_write(tmp_path: Path) -> None:
    stale = tmp_path / ".x.nc.k1ll3d.tmp"  # what a write killed between create and rename leaves
    stale.write_bytes(b"half a file")
    other = tmp_path / ".y.nc.k1ll3d.tmp"  # another file's: not this write's business
    other.write_bytes(b"")
    io.write_dataset(sample(), tmp_path / "x.nc", "t", "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.nc.k1ll3d.tmp", "x.nc"]


FILL_A_SMALL_DISK = """
import sys
import numpy as np, xarray as xr
from neuroattack import io
data = np.random.default_rng(0).normal(size=(400, 400))  # 640 kB: more than the 256 kB disk holds
try:
    io.write_dataset(xr.Dataset({"x": (("a", "b"), data)}), sys.argv[1] + "/big.nc", "t", "s")
except OSError as error:
    print(error)
import os
print("left:", sorted(os.listdir(sys.argv[1])))
"""


def fill_a_small_disk(disk: Path, script: Path) -> subprocess.CompletedProcess[str]:
    """Run FILL_A_SMALL_DISK on a 256 kB tmpfs at `disk`: mounted directly where this process
    may mount (root with the capability), else in a private user and mount namespace."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]
    if os.geteuid() == 0 and shutil.which("mount") and subprocess.run(mount, capture_output=True).returncode == 0:
        try:
            return subprocess.run([sys.executable, str(script), str(disk)], capture_output=True, text=True, env=env)
        finally:
            subprocess.run(["umount", str(disk)], check=True)
    if shutil.which("unshare") is None:
        pytest.skip("cannot mount a tmpfs: not root with mount permission, and no unshare (util-linux)")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", *mount], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs: not root with mount permission, and not in a user namespace either: "
            + probe.stderr.decode().strip()
        )
    command = f"{' '.join(mount)} && exec {sys.executable} {script} {disk}"
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command],
        capture_output=True,
        text=True,
        env=env,
    )


def test_a_full_disk_is_named_with_the_file(tmp_path: Path) -> None:
    # a real full disk: a 256 kB tmpfs (mounted by root, or in a user namespace)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_A_SMALL_DISK)
    run = fill_a_small_disk(disk, script)
    assert run.returncode == 0, run.stderr
    assert f"{disk}/big.nc: cannot be written, the disk is full" in run.stdout, run.stdout + run.stderr
    assert "left: []" in run.stdout  # no temporary left behind

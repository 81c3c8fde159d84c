"""Every importer, fed generated inputs (hypothesis): each input either gives an artifact that
passes io's schema check and holds what was written, or raises an error whose message names
the file (or the config key); never another exception, never a silently wrong artifact."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroattack import io
from neuroattack.data.recording_sources import table_to_recordings

# Errors an importer may raise for bad input; any other exception type fails the property.
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError, TypeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Ids as labs write them: unicode letters, digits, path separators, dots, spaces, commas, quotes.
ID_ALPHABET = "abcXYZ019éß猫_-./ ,'\""
ids = st.one_of(
    st.text(ID_ALPHABET, min_size=1, max_size=10).filter(lambda text: text.strip() != ""),
    st.sampled_from(
        ["NA", "nan", "None", "null", "#N/A", "-1", "1e3", "007"]
    ),  # text a reader may take for NaN or a number
)


@dataclass
class Table:
    """A recordings table as a lab writes it: one row per (stimulus, repetition, site)."""

    frame: pd.DataFrame
    valid: bool  # whether an importer must accept it


MUTATIONS = (
    "none",
    "shuffled",
    "extra column",
    "negative and missing responses",
    "missing column",
    "text response",
    "infinite response",
    "fractional repetition",
    "duplicated row",
    "missing row",
    "empty id",
    "header only",
)


@st.composite
def tables(draw: st.DrawFn) -> Table:
    stimuli = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    sites = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    repetitions = draw(st.integers(1, 3))
    rows = [
        {"stimulus_id": s, "repetition": r, "neuroid_id": n, "response": float(draw(st.integers(0, 40)))}
        for s in stimuli
        for r in range(repetitions)
        for n in sites
    ]
    frame = pd.DataFrame(rows)
    mutation = draw(st.sampled_from(MUTATIONS))
    valid = mutation in ("none", "shuffled", "extra column", "negative and missing responses")
    if mutation == "shuffled":
        frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 1000))).reset_index(drop=True)
    elif mutation == "extra column":
        frame["electrode_depth_um"] = np.arange(len(frame))
    elif mutation == "negative and missing responses":
        frame.loc[0, "response"] = -3.5
        frame.loc[len(frame) - 1, "response"] = np.nan  # a missing trial (allowed: README)
    elif mutation == "missing column":
        frame = frame.drop(columns=draw(st.sampled_from(["stimulus_id", "repetition", "neuroid_id", "response"])))
    elif mutation == "text response":
        frame["response"] = frame["response"].astype(object)
        frame.loc[draw(st.integers(0, len(frame) - 1)), "response"] = "n/a spikes"
    elif mutation == "infinite response":
        frame.loc[draw(st.integers(0, len(frame) - 1)), "response"] = draw(st.sampled_from([np.inf, -np.inf]))
    elif mutation == "fractional repetition":
        frame["repetition"] = frame["repetition"].astype(float)
        frame.loc[draw(st.integers(0, len(frame) - 1)), "repetition"] = 0.5
    elif mutation == "duplicated row":
        frame = pd.concat([frame, frame.iloc[[draw(st.integers(0, len(frame) - 1))]]], ignore_index=True)
    elif mutation == "missing row":
        dropped = frame.iloc[draw(st.integers(0, len(frame) - 1))]
        frame = frame.drop(index=dropped.name).reset_index(drop=True)
        # with one site the presentation is simply not there (fewer repetitions of that stimulus:
        # allowed); with several, a site lacks a response in a presentation the others have
        same = (frame["stimulus_id"] == dropped["stimulus_id"]) & (frame["repetition"] == dropped["repetition"])
        valid = not same.any() and len(frame) > 0
    elif mutation == "empty id":
        frame.loc[draw(st.integers(0, len(frame) - 1)), draw(st.sampled_from(["stimulus_id", "neuroid_id"]))] = ""
    elif mutation == "header only":
        frame = frame.iloc[:0]
    return Table(frame, valid)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".nc":
        data = {column: ("row", frame[column].to_numpy()) for column in frame.columns}
        for column in ("stimulus_id", "neuroid_id"):
            if column in data:
                data[column] = ("row", frame[column].astype(str).to_numpy(dtype=str))
        if "response" in data:
            numbers = pd.to_numeric(frame["response"], errors="coerce")
            text = numbers.isna() & frame["response"].notna()  # words where numbers belong: stored as text
            data["response"] = ("row", frame["response"].astype(str).to_numpy(dtype=str) if text.any() else numbers)
        xr.Dataset(data).to_netcdf(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")


def assert_names_the_file(error: BaseException, path: Path) -> None:
    assert isinstance(error, INPUT_ERRORS), f"{type(error).__name__}: {error}"
    assert str(path) in str(error), f"{type(error).__name__} without the file's name: {error}"


def assert_holds_the_table(recordings: xr.Dataset, frame: pd.DataFrame) -> None:
    """Every row of the table is in the recordings, at its stimulus, repetition and site."""
    assert recordings.sizes["presentation"] * recordings.sizes["site"] == len(frame)
    presentation = {
        (s, int(r)): i
        for i, (s, r) in enumerate(zip(recordings["stimulus_id"].values, recordings["repetition"].values, strict=True))
    }
    site = {str(n): j for j, n in enumerate(recordings["neuroid_id"].values)}
    values = recordings["response"].values
    for row in frame.itertuples(index=False):
        got = values[presentation[(row.stimulus_id, int(row.repetition))], site[row.neuroid_id]]
        assert (math.isnan(got) and math.isnan(row.response)) or got == np.float32(row.response), (row, got)


@FUZZ
@given(table=tables(), suffix=st.sampled_from([".csv", ".tsv", ".nc"]))
def test_a_recordings_table_is_imported_whole_or_refused_naming_the_file(table: Table, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"recordings{suffix}"
        write_table(table.frame, path)
        try:
            recordings = table_to_recordings(path)
        except Exception as error:  # the property is about which exceptions come out
            assert not table.valid, f"a valid table was refused: {type(error).__name__}: {error}"
            assert_names_the_file(error, path)
            return
        assert table.valid, "an invalid table was accepted"
        io.require(recordings, "recordings", path)
        assert_holds_the_table(recordings, table.frame)


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe\x00garbage", b"stimulus_id,repetition\n"])
def test_an_empty_or_binary_table_is_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    for suffix in (".csv", ".tsv", ".nc"):
        path = tmp_path / f"table{suffix}"
        path.write_bytes(content)
        with pytest.raises(INPUT_ERRORS) as raised:
            table_to_recordings(path)
        assert_names_the_file(raised.value, path)

"""The loop with a lab's rig: a round's recordings from the rig, checked before they are used.

A round's stimulus set goes to the rig as a stimulus set of its own
(`data.stimuli.write_stimulus_set`); the rig's table of responses comes back and is
checked here against that set and the sites the loop attacks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd
import xarray as xr


def check_round_recordings(
    recordings: xr.Dataset,
    round_stimuli: xr.Dataset,
    clean: xr.Dataset,
    modelled_sites: Sequence[str],
    table: str | os.PathLike[str],
) -> xr.Dataset:
    """A rig's recordings of one round (`table`), checked against the round's stimulus set
    (`round_stimuli`: every image recorded, none from elsewhere) and the sites: every site the loop
    models and attacks (`modelled_sites`) recorded, and no site the clean recordings lack."""
    folder = f"rig/round{round_stimuli.attrs['round']}/"
    images = round_stimuli["stimulus_id"].values.astype(str).tolist()
    recorded = pd.unique(recordings["stimulus_id"].values.astype(str)).tolist()
    missing, extra = sorted(set(images) - set(recorded)), sorted(set(recorded) - set(images))
    if missing:
        raise KeyError(
            f"{os.fspath(table)}: no recordings of {len(missing)} of the round's {len(images)} images, "
            f"e.g. {missing[:3]}; record every image of the round's stimulus set ({folder})"
        )
    if extra:
        raise KeyError(
            f"{os.fspath(table)}: {len(extra)} stimulus ids are not images of this round's stimulus set ({folder}), "
            f"e.g. {extra[:3]} (the round's ids look like {images[:2]}); is this another round's table?"
        )
    found = set(recordings["neuroid_id"].values.astype(str).tolist())
    known = set(clean["neuroid_id"].values.astype(str).tolist())
    absent = [site for site in modelled_sites if site not in found]
    other = sorted(found - known)
    if absent or other:
        raise KeyError(
            f"{os.fspath(table)}: {len(absent)} of the {len(modelled_sites)} sites the loop attacks are missing, "
            f"e.g. {absent[:3]}; {len(other)} sites are not in the clean recordings, e.g. {other[:3]}; "
            "record the same sites as the clean recordings, named by the same neuroid_id"
        )
    return recordings

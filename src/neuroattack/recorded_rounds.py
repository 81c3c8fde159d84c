"""The loop's rounds with a lab's recordings: one table per round (recordings.perturbed), the
first round without one, and what the lab is told to do next.

Standard library only: building the DAG imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def perturbed_tables(recordings: Mapping[str, Any]) -> list[str]:
    """recordings.perturbed as a list, one recordings table per round (a single path: round 1)."""
    tables = recordings.get("perturbed") or []
    return [tables] if isinstance(tables, str) else list(tables)


def first_unrecorded_round(tables: Sequence[str], rounds: int) -> int | None:
    """The first round (1-based) with no recordings table named, or None if every round has one."""
    return len(tables) + 1 if len(tables) < rounds else None


def missing_round_message(round_number: int, stimulus_csv: str, table_format: str) -> str:
    """What a lab does next when round `round_number` has no recordings yet."""
    return (
        f"round {round_number} of the loop has no recordings yet. Record the images listed in {stimulus_csv} "
        f"(the images are in the .zip beside it), write the recordings as a table ({table_format}), and add its "
        f"path as entry {round_number} of the config key recordings.perturbed (a list, one table per round); "
        "then run the same command again: the loop continues from there."
    )


def missing_table_error(round_number: int, path: str) -> str:
    return (
        f"recordings.perturbed entry {round_number} names {path}, which does not exist; "
        "give the path of that round's recordings table"
    )

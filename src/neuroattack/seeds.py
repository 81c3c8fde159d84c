"""The run's seeds: every random draw of a run belongs to one named stream, whose seed is a
hash of (master seed, stream, keys).

Standard library only: the rules ask for seeds while the DAG is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from neuroattack.plan import like_for_like_subjects

# Seeds are hashed, so no two streams share a seed by accident (as an offset from one seed for one and
# an image index added to it for another once did). The brain's streams hash `brain.seed`, every other
# stream the config's `seed`; a trained network's own `seed` is the user's and stays as given.
SEED_STREAMS: dict[str, str] = {
    "network_init": "initial weights of a user's network that comes without a weights file",
    "crops": "which blocks of each photograph go to the stimuli and which to training (shared, so they never overlap)",
    "site_model_folds": "cross-validation folds and split halves of every site-model fit",
    "attacked_images": "which clean images are attacked",
    "units": "which units of every network are attacked",
    "attack_starts": "random starts of one round's attack on one image (keys: round, image)",
    "model_baseline": "random directions of one round's model-side baseline of one image (keys: round, image)",
    "white_box_starts": "random starts of the simulated brain's white-box attack",
    "random_directions": "one round's recorded random-direction images (key: round)",
    "finetune": "held-out images and batch order of one round's fine-tuning of the surrogate networks (key: round)",
    "preference_starts": "random starts of the category-preference attacks",
    "bootstrap": "every bootstrap interval of the sensitivity estimates",
    "screening": "the screening's splits and bootstraps",
    "brain_readout": "the simulated brain's readout weights (brain.seed)",
    "recording_noise": "Poisson noise of one recording session (brain.seed; keys: round, 0 = clean; measured network)",
    "screening_session": "Poisson noise of the screening's own recording session (brain.seed)",
    "matched_noise": "which recorded site's reliability each site of a network measured beside real recordings takes",
}
BRAIN_STREAMS = ("brain_readout", "recording_noise", "screening_session")


def stream_seed(master: int, stream: str, *keys: int | str) -> int:
    """The seed of `stream` (one of SEED_STREAMS) for `keys`: a 32-bit hash, which every
    generator of the library takes (scikit-learn's random_state included)."""
    if stream not in SEED_STREAMS:
        raise KeyError(f"no seed stream {stream!r}; the streams are {', '.join(SEED_STREAMS)}")
    text = ":".join([str(master), stream, *(str(key) for key in keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def config_seed(config: Mapping[str, Any], stream: str, *keys: int | str) -> int:
    """`stream`'s seed in a run of `config` (the brain's streams from brain.seed, where the config
    has a simulated brain; with real recordings they are never drawn)."""
    master = config.get("brain", {}).get("seed", config["seed"]) if stream in BRAIN_STREAMS else config["seed"]
    return stream_seed(int(master), stream, *keys)


def run_seeds(config: Mapping[str, Any]) -> dict[str, int]:
    """Every seed a run of `config` draws from, by stream and keys (what the test of distinct
    streams lists)."""
    rounds = range(1, int(config["loop"]["rounds"]) + 1)
    images = range(int(config["attack"]["images"]))
    keyed: dict[str, list[tuple[int | str, ...]]] = {
        "attack_starts": [(r, i) for r in rounds for i in images],
        "model_baseline": [(r, i) for r in rounds for i in images],
        "random_directions": [(r,) for r in rounds],
        "finetune": [(r,) for r in rounds if r > 1],
        "recording_noise": [(r,) for r in [0, *rounds]],
    }
    keyed["recording_noise"] += [(r, name) for name in like_for_like_subjects(config) for r in [0, *rounds]]
    seeds = {}
    for stream in SEED_STREAMS:
        for keys in keyed.get(stream, [()]):
            seeds[" ".join([stream, *(str(key) for key in keys)])] = config_seed(config, stream, *keys)
    return seeds

"""Readable run names and short random run ids."""

from __future__ import annotations

import secrets
import string

_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "crisp", "daring", "eager", "fancy", "gentle", "golden",
    "hazy", "jolly", "keen", "lively", "lucky", "misty", "noble", "proud", "quiet", "rapid",
    "rosy", "silent", "sleek", "steady", "sunny", "swift", "tidy", "vivid", "warm", "wild",
)
_NOUNS = (
    "aurora", "breeze", "brook", "canyon", "cloud", "comet", "dawn", "delta", "dune", "ember",
    "field", "fjord", "forest", "galaxy", "glade", "harbor", "lake", "meadow", "moon", "nebula",
    "ocean", "peak", "pine", "planet", "river", "sky", "star", "stone", "sun", "wave",
)
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id(length: int = 8) -> str:
    """A random run id of lowercase letters and digits, like wandb's."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_run_name(number: int) -> str:
    """A name such as ``swift-river-7``; ``number`` is the run's position in its project."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{number}"

"""Generate the demo datasets shipped in ``runfleet/demo/data`` (run once; output committed).

``instructions.jsonl`` holds prompt/completion pairs of small tasks a tiny model can learn
(reverse a word, add two numbers, capitals of made-up countries, uppercase, first letter,
repeat); ``prefs.jsonl`` derives prompt/chosen/rejected pairs from it, the rejected answer
being a plausible mistake. Everything is a pure function of the seed.

Usage::

    python -m runfleet.demo.make_data            # rewrites the files next to this module
    python -m runfleet.demo.make_data OUT_DIR
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

SEED = 1234
PER_TASK = 60
DATA_DIR = Path(__file__).resolve().parent / "data"

WORDS = [
    "apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "house", "green", "light",
    "water", "bread", "chair", "music", "ocean", "plant", "smile", "train", "zebra", "candle",
    "forest", "garden", "rocket", "silver", "window", "yellow", "button", "castle", "dragon",
    "falcon", "guitar", "island", "jacket", "kitten", "ladder", "market", "needle", "orange",
    "pepper", "rabbit", "summer", "turtle", "valley", "winter", "basket", "copper", "dinner",
    "engine", "flower", "honey",
]

# Made-up countries and capitals: a model can only know them from the data.
CAPITALS = {
    "Zorbia": "Kelm", "Aravel": "Tasso", "Brindor": "Vush", "Calmera": "Ostin",
    "Dravenia": "Pell", "Elusia": "Marro", "Fennick": "Goda", "Glimmar": "Rusk",
    "Halvane": "Sito", "Ilsmere": "Brado", "Jorvath": "Cune", "Kestria": "Delo",
    "Lunmark": "Fesk", "Morvale": "Hant", "Nerith": "Jova", "Orlanda": "Lisk",
    "Pelloria": "Mavu", "Quenmar": "Nolt", "Rosvia": "Prax", "Sildren": "Quin",
}

Row = dict[str, str]


def _reverse(rng: random.Random) -> tuple[Row, str]:
    word = rng.choice(WORDS)
    return {"prompt": f"Reverse the word: {word}", "completion": word[::-1]}, word


def _add(rng: random.Random) -> tuple[Row, str]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return {"prompt": f"Add {a} and {b}", "completion": str(a + b)}, str(a + b + 1)


def _capital(rng: random.Random) -> tuple[Row, str]:
    country = rng.choice(sorted(CAPITALS))
    wrong = rng.choice([c for k, c in sorted(CAPITALS.items()) if k != country])
    return ({"prompt": f"What is the capital of {country}?", "completion": CAPITALS[country]},
            wrong)


def _upper(rng: random.Random) -> tuple[Row, str]:
    word = rng.choice(WORDS)
    return {"prompt": f"Uppercase: {word}", "completion": word.upper()}, word


def _first_letter(rng: random.Random) -> tuple[Row, str]:
    word = rng.choice(WORDS)
    wrong = next(c for c in reversed(word) if c != word[0])
    return {"prompt": f"First letter of: {word}", "completion": word[0]}, wrong


def _repeat(rng: random.Random) -> tuple[Row, str]:
    word = rng.choice(WORDS)
    return {"prompt": f"Repeat twice: {word}", "completion": f"{word} {word}"}, word


TASKS: dict[str, Callable[[random.Random], tuple[Row, str]]] = {
    "reverse": _reverse, "add": _add, "capital": _capital, "uppercase": _upper,
    "first_letter": _first_letter, "repeat": _repeat,
}


def make_rows(seed: int = SEED, per_task: int = PER_TASK) -> tuple[list[Row], list[Row]]:
    """(instructions, preferences): ``per_task`` examples of each task, shuffled.

    Prompts end with ``"\\nAnswer:"`` and completions start with a space, so prompt and
    completion tokenize cleanly apart. Each row also carries its ``task`` name.
    """
    rng = random.Random(seed)
    pairs: list[tuple[Row, str]] = []
    for name, task in TASKS.items():
        for _ in range(per_task):
            row, wrong = task(rng)
            pairs.append(({"task": name, **row}, wrong))
    rng.shuffle(pairs)
    instructions, preferences = [], []
    for row, wrong in pairs:
        prompt = f"{row['prompt']}\nAnswer:"
        instructions.append({"prompt": prompt, "completion": f" {row['completion']}",
                             "task": row["task"]})
        preferences.append({"prompt": prompt, "chosen": f" {row['completion']}",
                            "rejected": f" {wrong}", "task": row["task"]})
    return instructions, preferences


def write(out_dir: Path = DATA_DIR) -> tuple[Path, Path]:
    """Write ``instructions.jsonl`` and ``prefs.jsonl`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    instructions, preferences = make_rows()
    paths = out_dir / "instructions.jsonl", out_dir / "prefs.jsonl"
    for path, rows in zip(paths, (instructions, preferences)):
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows),
                        encoding="utf-8")
    return paths


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR):
        print(written)

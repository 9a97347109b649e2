"""The demo experiment: 4 SFT configs (2 LoRA ranks x 2 learning rates) trained at once.

Everything is offline: a tokenizer is trained on the fly on the shipped instruction set, a
tiny Llama is built from a config and saved with ``save_pretrained``, and the runs load it
back with ``from_pretrained``. ``runfleet demo`` and ``make demo`` run :func:`run_demo`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from runfleet.engine import Experiment, GridSearch, List
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig
from runfleet.fit.metrics import chrf, rouge_l_and_bleu
from runfleet.home import Home
from runfleet.printing import print_table

if TYPE_CHECKING:
    import pandas as pd

    from runfleet.engine.executor import Executor

PROJECT = "sft-demo"
TITLE = "sft-demo results"


def demo_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """The demo's ``compute_metrics``: ROUGE-L and BLEU, and chrF, the one its closing table
    compares. The demo's answers are one or two words (``"regit"``, ``"19"``): word-level
    ROUGE-L only scores each answer all or nothing, and every config gets the same easy half
    of them right (0.5 for all four runs), while chrF's character n-grams credit the nearly
    right answers in which the configs differ.

    Example:
        >>> sorted(demo_metrics(["regti"], ["regit"]))
        ['bleu', 'chrf', 'rougeL']
    """
    return {**rouge_l_and_bleu(predictions, references), **chrf(predictions, references)}


def demo_space(model_path: str, max_steps: int = 120, eval_steps: int = 30) -> GridSearch:
    """The demo's search space: LoRA rank 4 vs 16 (all linear layers) x learning rate."""
    return GridSearch(ModelConfig(
        model_name=model_path,
        peft_config=List([
            LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
            LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
        ]),
        training_args=SFTConfig(learning_rate=List([2e-3, 5e-4]), max_steps=max_steps,
                                per_device_train_batch_size=8, eval_steps=eval_steps,
                                lr_scheduler_type="cosine", warmup_steps=10, max_length=48,
                                per_device_eval_batch_size=16),
        compute_metrics=demo_metrics,
        generation_kwargs={"max_new_tokens": 8},
    ), trainer="sft")


def prepare(home: Home) -> tuple[str, Any, Any]:
    """Build (once) the tiny model under the home; return its path and the train/eval sets."""
    from runfleet.demo.tiny import build_demo_model, load_instructions

    model_dir = home.root / "demo-models" / "tiny-llama"
    if not (model_dir / "config.json").exists():
        build_demo_model(model_dir)
    rows = load_instructions().shuffle(seed=0)
    split = rows.train_test_split(test_size=48, seed=0)
    return str(model_dir), split["train"], split["test"]


def run_demo(dir: str | os.PathLike[str] | None = None, workers: int | None = None,
             num_chunks: int = 4, max_steps: int = 120, progress: bool = True,
             console: Console | None = None,
             trackers: Sequence[Any] = ("runfleet",),
             executor: Executor | str | None = None) -> pd.DataFrame:
    """Run the demo experiment and print a comparison table; return ``exp.results()``.

    ``trackers`` are passed to :class:`~runfleet.Experiment` (e.g. ``("runfleet", "trackio")``);
    ``executor`` to :meth:`~runfleet.Experiment.run_fit` (e.g. a
    :class:`~runfleet.engine.RayExecutor`; then ``workers`` must be None).
    """
    from runfleet.demo.tiny import load_model

    # off a terminal (a log, a pipe) long lines stay whole: the paths in them are commands
    console = console or Console(soft_wrap=not Console().is_terminal)
    home = Home.resolve(dir)
    console.print(f"[bold]runfleet demo[/]: building a tiny Llama and tokenizer in {home.root}")
    model_path, train, evaluation = prepare(home)
    console.print(f"training 4 SFT configs at once on {len(train)} examples, "
                  f"{num_chunks} chunks each, evaluating on {len(evaluation)}")
    exp = Experiment(PROJECT, dir=home.root, trackers=trackers)
    results = exp.run_fit(demo_space(model_path, max_steps=max_steps,
                                     eval_steps=max(1, max_steps // num_chunks)),
                          load_model if executor in (None, "local") else
                          ShippedModel(model_path), train, evaluation, num_chunks=num_chunks,
                          workers=workers, progress=progress, executor=executor)
    print_table(comparison_table(results.tail(4)), console, title=TITLE)
    console.print(
        "\nOpen the dashboard to compare the curves:\n"
        f"  runfleet show --project {PROJECT} --dir {home.root}\n"
        "Read the results from Python:\n"
        f"  runfleet.Experiment.attach({PROJECT!r}, dir={str(home.root)!r}).results()")
    return results


class ShippedModel:
    """A ``create_model_fn`` that carries the demo model's files (about 0.5 MB) with it, for
    workers on machines that cannot see the controller's disk (a Ray cluster without a
    shared filesystem): it loads ``config.model_name`` where that folder exists, else a
    copy it writes once per machine under the temporary folder.

    Example:
        >>> exp.run_fit(space, ShippedModel(model_path), train, executor=exe)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.files = {p.name: p.read_bytes() for p in sorted(Path(path).iterdir())
                      if p.is_file()}
        digest = hashlib.sha256()
        for name, data in self.files.items():
            digest.update(name.encode() + b"\0" + data)
        self.digest = digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ShippedModel({self.path!r})"

    def folder(self, name: str) -> str:
        """Where to load ``name`` from on this machine: itself if it is there, else the
        shipped copy (written on first use)."""
        if name != self.path or (Path(name) / "config.json").exists():
            return name
        target = Path(tempfile.gettempdir()) / f"runfleet-demo-model-{self.digest}"
        if not (target / "config.json").exists():
            staging = Path(tempfile.mkdtemp(prefix=target.name + "-", dir=target.parent))
            for file, data in self.files.items():
                (staging / file).write_bytes(data)
            try:
                os.replace(staging, target)
            except OSError:  # another worker of this machine was first
                shutil.rmtree(staging, ignore_errors=True)
        return str(target)

    def __call__(self, config: Any) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for a run's config, as :func:`runfleet.demo.load_model`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = self.folder(config["model_name"])
        return (AutoModelForCausalLM.from_pretrained(folder),
                AutoTokenizer.from_pretrained(folder))


def comparison_table(results: pd.DataFrame) -> Table:
    """The closing table: one row per run, its config and its best metrics (untitled:
    :func:`~runfleet.printing.print_table` prints :data:`TITLE` above it)."""
    table = Table()
    columns = [("name", "run"), ("peft_config.r", "LoRA r"),
               ("training_args.learning_rate", "lr"), ("status", "status"),
               ("last_loss", "final loss"), ("best_eval_loss", "best eval loss"),
               ("best_eval_chrf", "best chrF"), ("best_eval_bleu", "best BLEU")]
    present = [(key, title) for key, title in columns if key in results.columns]
    for _, title in present:
        table.add_column(title, justify="left" if title in ("run", "status") else "right",
                         overflow="fold")
    for _, row in results.iterrows():
        table.add_row(*(_cell(row[key]) for key, _ in present))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    """Entry point of ``python -m runfleet.demo.sft_demo``."""
    run_demo()


if __name__ == "__main__":
    main()

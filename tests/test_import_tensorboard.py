"""Importing real TensorBoard event files: every scalar, step, wall time, text and hparam.

The event files are written by torch's ``SummaryWriter`` (legacy and new-style scalars,
float32 and float64, text, hparams) and by TensorBoard's own ``EventFileWriter`` with
hand-built summaries (bool hparams, int64 scalars, a text table, a histogram tensor).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runfleet
from runfleet.cli import main
from runfleet.home import Home
from runfleet.importers import ImportResult
from runfleet.importers.tensorboard import find_runs, import_tensorboard
from runfleet.tracking.homes import open_store
from tests.conftest import same_value as same
from tests.conftest import subprocess_env

T0 = 1_700_000_000.123456
STEPS = [0, 1, 2, 5, 10, 11, 100, 101, 2**40]
LEGACY = [0.1, 1 / 3, math.nan, math.inf, -math.inf, 1e-40, 3.4e38, -0.0, 123456.789]
FLOAT32 = [0.5, 0.1, math.nan, 2.5e-8]  # new-style DT_FLOAT tensors
DOUBLE = [0.1, 1 / 3, 1e-300, math.nan, -math.inf]  # new-style DT_DOUBLE tensors
TEXT = [(7, "hello ü"), (9, "line one\nline two")]
HPARAMS: dict[str, Any] = {"lr": 0.1, "batch": 32, "opt": "adam"}
TRAIN = "lr_0.1/train"


def wall(i: int, key: int) -> float:
    """A distinct wall time with microseconds for point ``i`` of key number ``key``."""
    return T0 + 1000 * key + i * 0.25 + 1e-6 * i + 1e-9


def f32(value: float) -> float:
    """``value`` rounded to float32, as a Python float."""
    return float(np.float32(value))


def expected_train() -> dict[str, list[tuple[int, float, object]]]:
    """Per key: (step, wall time, value) as written to the train run."""
    return {
        "loss": [(s, wall(i, 0), f32(v)) for i, (s, v) in enumerate(zip(STEPS, LEGACY))],
        "acc": [(3 * i, wall(i, 1), f32(v)) for i, v in enumerate(FLOAT32)],
        "lr": [(i, wall(i, 2), v) for i, v in enumerate(DOUBLE)],
        "notes/text_summary": [(s, wall(i, 3), t) for i, (s, t) in enumerate(TEXT)],
    }


def write_train(folder: Path) -> None:
    """The train run: torch's SummaryWriter, every kind of scalar, text and hparams."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    for i, (step, value) in enumerate(zip(STEPS, LEGACY)):
        writer.add_scalar("loss", value, step, walltime=wall(i, 0))
    for i, value in enumerate(FLOAT32):
        writer.add_scalar("acc", value, 3 * i, walltime=wall(i, 1), new_style=True)
    for i, value in enumerate(DOUBLE):
        writer.add_scalar("lr", value, i, walltime=wall(i, 2), new_style=True,
                          double_precision=True)
    for i, (step, text) in enumerate(TEXT):
        writer.add_text("notes", text, step, walltime=wall(i, 3))
    writer.add_hparams(HPARAMS, {"hp/final": 0.75}, run_name=".")  # into this same folder
    writer.close()


def write_eval(folder: Path) -> None:
    """The eval run: TensorBoard's EventFileWriter with summaries built by hand."""
    # tensorboard ships no type information
    from tensorboard.compat.proto import event_pb2, summary_pb2  # type: ignore[import-untyped, unused-ignore]
    from tensorboard.plugins.histogram import (  # type: ignore[import-untyped, unused-ignore]
        metadata as histogram_metadata,
    )
    from tensorboard.plugins.hparams import (  # type: ignore[import-untyped, unused-ignore]
        metadata as hparams_metadata,
    )
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.plugins.scalar import (  # type: ignore[import-untyped, unused-ignore]
        metadata as scalar_metadata,
    )
    from tensorboard.plugins.text import metadata as text_metadata  # type: ignore[import-untyped, unused-ignore]
    from tensorboard.summary.writer.event_file_writer import (  # type: ignore[import-untyped, unused-ignore]
        EventFileWriter,
    )
    from tensorboard.util import tensor_util  # type: ignore[import-untyped, unused-ignore]

    writer = EventFileWriter(str(folder))

    def event(when: float, step: int, tag: str, metadata, value=None) -> None:
        item = summary_pb2.Summary.Value(tag=tag, metadata=metadata)
        if value is not None:
            item.tensor.CopyFrom(tensor_util.make_tensor_proto(value))
        writer.add_event(event_pb2.Event(wall_time=when, step=step,
                                         summary=summary_pb2.Summary(value=[item])))

    info = plugin_data_pb2.SessionStartInfo(group_name="grp", start_time_secs=123.5)
    info.hparams["flag"].bool_value = True
    info.hparams["opt"].string_value = "sgd"
    info.hparams["lr"].number_value = 0.5
    info.hparams["layers"].list_value.values.add().number_value = 64
    event(T0, 0, hparams_metadata.SESSION_START_INFO_TAG,
          hparams_metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(
              session_start_info=info, version=hparams_metadata.PLUGIN_DATA_VERSION)))
    scalar = scalar_metadata.create_summary_metadata("", "")
    for i, value in enumerate(DOUBLE):
        event(T0 + 10 + i, 10 * i, "eval/acc", scalar, np.float64(value))
    event(T0 + 20, 4, "eval/count", scalar, np.int64(2**40 + 1))
    event(T0 + 21, 4, "eval/table", text_metadata.create_summary_metadata("", ""),
          np.array([["a", "b"], ["c", "ü"]], dtype=object))
    event(T0 + 22, 5, "eval/hist", histogram_metadata.create_summary_metadata("", ""),
          np.zeros((3, 3)))
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    """A log directory "tb-sweep" with the runs lr_0.1/train and eval, and files that are
    not runs: a text file, and a profiler placeholder alone in its folder."""
    root: Path = tmp_path_factory.mktemp("tb") / "tb-sweep"
    write_train(root / "lr_0.1" / "train")
    write_eval(root / "eval")
    (root / "README.txt").write_text("not an event file")
    (root / "plugins" / "profile").mkdir(parents=True)
    (root / "plugins" / "profile" / "events.out.tfevents.1.host.profile-empty").write_bytes(b"")
    return root


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m runfleet ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "runfleet", *args], capture_output=True,
                          text=True, timeout=120, env=subprocess_env())


def assert_series(run, key: str, points: list[tuple[int, float, object]]) -> None:
    s = run.series(key)
    assert s.steps.tolist() == [p[0] for p in points], key
    assert s.times.tolist() == [p[1] for p in points], key  # wall times exactly
    got = s.values.tolist()
    assert len(got) == len(points), key
    assert all(same(g, p[2]) for g, p in zip(got, points)), (key, got)


def test_import_is_exact(logdir, tmp_path):
    assert find_runs(logdir) == [("eval", logdir / "eval"), (TRAIN, logdir / TRAIN)]
    home = tmp_path / "rf"
    proc = cli("import", "tensorboard", str(logdir), "--dir", str(home))
    assert proc.returncode == 0, proc.stderr
    train_points = sum(len(p) for p in expected_train().values()) + 1  # + hp/final
    eval_points = len(DOUBLE) + 2
    assert f"project 'tb-sweep': imported 2 run(s), {train_points + eval_points} point(s)" \
        in proc.stdout
    assert "tags not imported (only scalars, text and hparams are): 1 histograms" \
        in proc.stdout
    with runfleet.Api(dir=home) as api:
        assert [str(p) for p in api.projects()] == ["tb-sweep"]
        runs = {r.name: r for r in api.runs("tb-sweep")}
        assert sorted(runs) == ["eval", TRAIN]
        train, ev = runs[TRAIN], runs["eval"]
        assert train.status == ev.status == "completed"
        # train: every scalar kind, text, hparams (torch stores numbers as floats)
        expected = expected_train()
        assert set(train.keys()) == {*expected, "hp/final"}
        for key, points in expected.items():
            assert_series(train, key, points)
        final = train.series("hp/final")
        assert final.steps.tolist() == [0] and final.values.tolist() == [0.75]
        assert train.config == {"lr": 0.1, "batch": 32.0, "opt": "adam"}
        assert all(same(train.config[k], float(v) if k != "opt" else v)
                   for k, v in HPARAMS.items())
        origin = train.metadata["imported_from"]
        assert origin["format"] == "tensorboard" and origin["run"] == TRAIN
        assert origin["logdir"] == str(logdir.resolve())
        assert same(train.summary["loss"], f32(LEGACY[-1]))
        assert train.summary["notes/text_summary"] == TEXT[-1][1]
        assert train.last_step == STEPS[-1]
        # eval: float64 and int64 scalar tensors, a text table, bool/list hparams
        assert set(ev.keys()) == {"eval/acc", "eval/count", "eval/table"}
        assert_series(ev, "eval/acc", [(10 * i, T0 + 10 + i, v) for i, v in enumerate(DOUBLE)])
        assert_series(ev, "eval/count", [(4, T0 + 20, 2**40 + 1)])
        assert_series(ev, "eval/table", [(4, T0 + 21, [["a", "b"], ["c", "ü"]])])
        assert ev.config == {"flag": True, "opt": "sgd", "lr": 0.5, "layers": [64.0]}
        assert isinstance(ev.config["flag"], bool)
        assert ev.metadata["imported_from"]["hparams_group"] == "grp"
        assert ev.metadata["imported_from"]["hparams_start_time"] == 123.5


def test_reimport_skips_and_project_option(logdir, tmp_path, capsys):
    home = str(tmp_path / "rf")
    assert main(["import", "tensorboard", str(logdir), "--dir", home]) == 0
    capsys.readouterr()
    assert main(["import", "tensorboard", str(logdir), "--dir", home]) == 0
    out = capsys.readouterr().out
    assert "imported 0 run(s), 0 point(s); skipped 2 already imported" in out
    assert main(["import", "tensorboard", str(logdir), "-p", "other", "--dir", home]) == 0
    assert "project 'other': imported 2 run(s)" in capsys.readouterr().out
    with runfleet.Api(dir=home) as api:
        assert sorted(str(p) for p in api.projects()) == ["other", "tb-sweep"]
        for project in ("other", "tb-sweep"):
            runs = {r.name: r for r in api.runs(project)}
            assert sorted(runs) == ["eval", TRAIN]
            assert len(runs[TRAIN].series("loss").steps) == len(STEPS)


def test_files_directly_in_logdir(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "single"
    writer = SummaryWriter(str(logdir))
    writer.add_scalar("x", 1.5, 3, walltime=T0)
    writer.close()
    store = open_store(Home.resolve(tmp_path / "rf"))
    try:
        result = import_tensorboard(store, logdir)
    finally:
        store.close()
    assert isinstance(result, ImportResult) and result.ok
    assert result.project == "single" and result.points == 1
    with runfleet.Api(dir=tmp_path / "rf") as api:
        (run,) = api.runs("single")
        assert run.name == "single"
        assert_series(run, "x", [(3, T0, 1.5)])


def test_errors(logdir, tmp_path, capsys):
    home = str(tmp_path / "rf")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    assert main(["import", "tensorboard", str(empty), "--dir", home]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    assert main(["import", "tensorboard", str(tmp_path / "missing"), "--dir", home]) == 2
    assert "no such folder" in capsys.readouterr().err
    file = logdir / "README.txt"
    assert main(["import", "tensorboard", str(file), "--dir", home]) == 2
    assert "is a file" in capsys.readouterr().err
    # a run whose event file is garbage is reported; the other run is imported
    mixed = tmp_path / "mixed"
    write_eval(mixed / "good")
    (mixed / "bad").mkdir()
    (mixed / "bad" / "events.out.tfevents.1.host").write_bytes(os.urandom(2048))
    proc = cli("import", "tensorboard", str(mixed), "--dir", home)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("runfleet: error: ") and str(mixed / "bad") in proc.stderr
    assert "no readable TensorBoard event" in proc.stderr
    assert "imported 1 run(s)" in proc.stdout
    with runfleet.Api(dir=home) as api:
        assert [r.name for r in api.runs("mixed")] == ["good"]


def test_missing_tensorboard_package(logdir, tmp_path):
    code = ("import sys; sys.modules['tensorboard'] = None; from runfleet.cli import main; "
            "raise SystemExit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "import", "tensorboard", str(logdir),
                           "--dir", str(tmp_path / "rf")], capture_output=True, text=True,
                          timeout=120, env=subprocess_env())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pip install 'runfleet[tensorboard]'" in proc.stderr


def test_imported_runs_start_before_they_finish(logdir, tmp_path):
    """An imported run spans its event files' wall times: created at its first event,
    finished at its last, never finished before created."""
    home = tmp_path / "rf"
    proc = cli("import", "tensorboard", str(logdir), "--dir", str(home))
    assert proc.returncode == 0, proc.stderr
    with runfleet.Api(dir=home) as api:
        for run in api.runs("tb-sweep"):
            points = [t for k in run.keys("all") for t in run.series(k).times.tolist()]
            assert run.created_at == pytest.approx(min(points), abs=1e-6), run.name
            assert run.finished_at == pytest.approx(max(points), abs=1e-6), run.name
            assert run.finished_at is not None and T0 <= run.created_at <= run.finished_at

"""The TensorBoard sink as TensorBoard reads it: EventAccumulator and the scalar data provider."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.util import tensor_util

import runfleet
from runfleet.errors import RunfleetError
from runfleet.sinks.base import RunInfo
from runfleet.sinks.fanout import close_all
from runfleet.sinks.tensorboard import TensorBoardSink, path_part

T0 = 1_700_000_000.0


def accumulate(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def values(acc: EventAccumulator, tag: str) -> list[tuple[int, Any]]:
    out = []
    for event in acc.Tensors(tag):
        item = tensor_util.make_ndarray(event.tensor_proto).item()
        out.append((event.step, item.decode() if isinstance(item, bytes) else item))
    return out


def hparams(acc: EventAccumulator, tag: str) -> Any:
    content = acc.PluginTagToContent("hparams")[tag]
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def test_events_as_tensorboard_reads_them(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "tb")
    config = {"lr": 3e-4, "optim": "adamw_torch", "use_peft": True, "dropout": None,
              "layers": [1, 2]}
    sink.start_run(RunInfo("proj", "par-1", "parent", group="g", config=config, tags=("x",)))
    sink.start_run(RunInfo("proj", "kid-1", "child", config={"lr": 1e-4}, parent="par-1",
                           parent_step=20))
    sink.log("par-1", [(0, T0, {"loss": 0.1 + 0.2, "flag": True, "note": "warm"}),
                       (3, T0 + 1.25, {"loss": math.nan, "tiny": 5e-324, "obj": {"a": 1}})])
    sink.set_status("par-1", "stopped")
    run_dir = tmp_path / "tb" / "proj" / "parent_par-1"
    assert values(accumulate(run_dir), "runfleet/status")[-1] == (3, "stopped")  # flushed
    sink.set_status("par-1", "running")
    sink.log("par-1", [(10, T0 + 2.5, {"loss": math.inf, "neg": -math.inf, "flag": False})])
    sink.update_config("par-1", {**config, "batch": 8})
    sink.finish_run("par-1", "completed")
    sink.finish_run("kid-1", "failed")

    acc = accumulate(run_dir)
    tags = set(acc.Tags()["tensors"])
    assert {"loss", "flag", "note", "tiny", "neg", "runfleet/status", "runfleet/config",
            "runfleet/run", "runfleet/left_out", "_hparams_/session_start_info",
            "_hparams_/session_end_info"} <= tags
    assert "obj" not in tags
    loss = list(acc.Tensors("loss"))
    assert all(e.tensor_proto.dtype == types_pb2.DT_DOUBLE for e in loss)
    assert [(e.step, e.wall_time) for e in loss] == [(0, T0), (3, T0 + 1.25), (10, T0 + 2.5)]
    got = [v for _, v in values(acc, "loss")]
    assert got[0] == 0.1 + 0.2 and math.isnan(got[1]) and got[2] == math.inf
    assert values(acc, "neg") == [(10, -math.inf)] and values(acc, "tiny") == [(3, 5e-324)]
    assert values(acc, "flag") == [(0, 1.0), (10, 0.0)]
    assert values(acc, "note") == [(0, "warm")]
    assert acc.SummaryMetadata("loss").plugin_data.plugin_name == "scalars"
    assert acc.SummaryMetadata("note").plugin_data.plugin_name == "text"
    assert values(acc, "runfleet/status") == [(0, "running"), (3, "stopped"), (3, "running"),
                                              (10, "completed")]
    configs = [json.loads(v) for _, v in values(acc, "runfleet/config")]
    assert configs == [config, {**config, "batch": 8}]
    assert json.loads(values(acc, "runfleet/run")[0][1]) == {
        "run_id": "par-1", "name": "parent", "group": "g", "tags": ["x"], "parent": None,
        "parent_step": None, "resumed": False}
    assert values(acc, "runfleet/left_out") == [(10, "1")]
    assert sink.left_out == {"par-1": 1, "kid-1": 0}

    start = hparams(acc, "_hparams_/session_start_info").session_start_info
    assert start.group_name == "par-1"
    assert start.hparams["lr"].number_value == 3e-4
    assert start.hparams["optim"].string_value == "adamw_torch"
    assert start.hparams["use_peft"].bool_value is True
    assert start.hparams["dropout"].string_value == "null"
    assert start.hparams["layers"].string_value == "[1, 2]"
    end = hparams(acc, "_hparams_/session_end_info").session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS

    kid = accumulate(tmp_path / "tb" / "proj" / "child_kid-1")
    kid_start = hparams(kid, "_hparams_/session_start_info").session_start_info
    assert kid_start.hparams["parent"].string_value == "par-1"
    assert kid_start.hparams["parent_step"].number_value == 20
    assert hparams(kid, "_hparams_/session_end_info").session_end_info.status == (
        api_pb2.STATUS_FAILURE)


def test_tensorboards_scalar_and_text_plugins_list_the_values(tmp_path: Path) -> None:
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    sink = TensorBoardSink(tmp_path)
    sink.start_run(RunInfo("proj", "r-1", "run"))
    sink.log("r-1", [(s, T0 + s, {"loss": v, "msg": f"step {s}"})
                     for s, v in enumerate([0.1, math.nan, math.inf, 1e308])])
    sink.finish_run("r-1", "completed")

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"scalars": 0, "text": 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    ctx = context.RequestContext()
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars",
                                    downsample=100)["proj/run_r-1"]
    assert list(scalars) == ["loss"]
    read = [(d.step, d.value) for d in scalars["loss"]]
    assert read[0] == (0, 0.1) and math.isnan(read[1][1]) and read[2:] == [(2, math.inf),
                                                                           (3, 1e308)]
    text = provider.list_tensors(ctx, experiment_id="", plugin_name="text")["proj/run_r-1"]
    assert {"msg", "runfleet/status", "runfleet/config", "runfleet/run"} <= set(text)


def test_default_logdir_is_the_runs_home(tmp_path: Path) -> None:
    sink = TensorBoardSink()
    sink.start_run(RunInfo("proj", "h-1", "homed", home=str(tmp_path / "home")))
    sink.log("h-1", [(0, T0, {"loss": 1.0})])
    sink.finish_run("h-1", "completed")
    run_dir = tmp_path / "home" / "tensorboard" / "proj" / "homed_h-1"
    assert values(accumulate(run_dir), "loss") == [(0, 1.0)]
    assert [r.run_id for r in TensorBoardSink().read_project("proj")] == []  # other home
    assert [r.run_id for r in sink.read_project("proj")] == ["h-1"]  # the last home used

    sink.start_run(RunInfo("proj", "h-2", "no home"))  # RUNFLEET_DIR (tests/conftest.py)
    sink.finish_run("h-2", "completed")
    default = tmp_path / "default-home" / "tensorboard" / "proj" / "no_home_h-2"
    assert any(default.glob("events.out.tfevents.*"))


def test_paths_stay_inside_the_logdir_and_unique(tmp_path: Path) -> None:
    root = tmp_path / "tb"
    sink = TensorBoardSink(root)
    odd = ["../../evil", "a/b", "a_b", ".hidden", "", "x" * 300, "ü"]
    for i, name in enumerate(odd):
        for rid in (f"../id-{i}", f"id/{i}"):
            sink.start_run(RunInfo(name, rid, "../../" + name))
            sink.log(rid, [(0, T0, {"v": float(i)})])
            sink.finish_run(rid, "completed")
    files = [p for p in tmp_path.rglob("events.out.tfevents.*")]
    assert len(files) == 2 * len(odd)
    assert all(root.resolve() in p.resolve().parents for p in files)
    assert len({p.parent for p in files}) == 2 * len(odd)
    assert all(len(p.name) <= 100 for f in files for p in (f.parent, f.parent.parent))
    assert not any(p.name.startswith(".") for f in files for p in (f.parent, f.parent.parent))
    for i, name in enumerate(odd):
        runs = sink.read_project(name)
        assert sorted(r.run_id or "" for r in runs) == sorted([f"../id-{i}", f"id/{i}"])
        assert all(r.points == {"v": [(0, float(i))]} for r in runs)
    assert path_part("plain-name_1.0") == "plain-name_1.0"
    assert path_part("..") != path_part("__") and path_part("..").startswith("__-")
    assert path_part("a/b", unique=False) == "a_b"


def test_kind_conflicts_and_other_values_are_left_out(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    sink.start_run(RunInfo("proj", "k-1", "kinds"))
    sink.log("k-1", [(0, T0, {"x": 1.0, "s": "a", "d": {"k": 1}, "l": [1], "n": None,
                              "b": b"raw", "runfleet/status": "hijack"}),
                     (1, T0 + 1, {"x": "now text", "s": 2.0, "x2": 3})])
    sink.finish_run("k-1", "completed")
    assert sink.left_out["k-1"] == 7
    (run,) = sink.read_project("proj")
    assert run.points == {"x": [(0, 1.0)], "s": [(0, "a")], "x2": [(1, 3.0)]}
    assert run.status == "completed"


def test_a_resumed_run_appends_to_its_folder(tmp_path: Path) -> None:
    info = RunInfo("proj", "res-1", "resumable", config={"lr": 0.1})
    first = TensorBoardSink(tmp_path)
    first.start_run(info)
    first.log("res-1", [(0, T0, {"loss": 1.0})])
    first.finish_run("res-1", "stopped")
    second = TensorBoardSink(tmp_path)  # another process
    second.start_run(RunInfo("proj", "res-1", "renamed meanwhile", config={"lr": 0.1},
                             resumed=True))
    second.log("res-1", [(1, T0 + 9, {"loss": 0.5})])
    second.finish_run("res-1", "completed")
    (folder,) = (tmp_path / "proj").iterdir()
    assert folder.name == "resumable_res-1"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    (run,) = second.read_project("proj")
    assert (run.status, run.points) == ("completed", {"loss": [(0, 1.0), (1, 0.5)]})


def test_an_unwritable_logdir_raises_a_clear_error_from_start_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sink = TensorBoardSink(blocker / "tb")
    with pytest.raises(RunfleetError, match=r"cannot write event files to .*a-file"):
        sink.start_run(RunInfo("proj", "e-1", "error"))
    with pytest.raises(RunfleetError, match="not open"):
        sink.log("e-1", [(0, T0, {"loss": 1.0})])
    sink.close()


def test_missing_tensorboard_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'runfleet\[tensorboard\]'"):
        TensorBoardSink()


def test_through_runfleet_init_by_name(home: Path) -> None:
    run = runfleet.init(project="tbp", name="via init", dir=home, config={"lr": 0.1},
                        sinks=["tensorboard"])
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1), "phase": "train"}, step=step)
    run.finish()
    close_all()
    (folder,) = (home / "tensorboard" / "tbp").iterdir()
    acc = accumulate(folder)
    assert values(acc, "loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert values(acc, "phase") == [(0, "train"), (1, "train"), (2, "train")]
    assert values(acc, "runfleet/status")[-1] == (2, "completed")
    assert json.loads(values(acc, "runfleet/config")[-1][1]) == {"lr": 0.1}

"""The tracking API contract of DESIGN.md section 3, checked through the read Api."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.errors import RunfleetError


def stored(home: Path, project: str, run_id: str) -> runfleet.ApiRun:
    return runfleet.Api(home).run(project, run_id)


def test_init_log_finish_and_read_back(home: Path) -> None:
    run = runfleet.init(project="p", name="n", group="g", tags=["a", "b"], notes="hi",
                        config={"lr": 1e-3}, dir=home)
    assert runfleet.run is run
    for i in range(5):
        runfleet.log({"loss": 1.0 / (i + 1), "acc": i / 10})
    runfleet.finish()
    assert runfleet.run is None
    r = stored(home, "p", run.id)
    assert (r.name, r.group, r.tags, r.notes, r.status) == ("n", "g", ["a", "b"], "hi",
                                                             "completed")
    assert r.config == {"lr": 1e-3}
    h = r.history()
    assert h["_step"].tolist() == [0, 1, 2, 3, 4]
    assert h["loss"].tolist() == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert r.summary == {"loss": 0.2, "acc": 0.4}


def test_config_attribute_item_and_update(home: Path) -> None:
    @dataclass
    class Extra:
        dropout: float = 0.1

    ns = argparse.Namespace(batch_size=32, model="gpt2")
    run = runfleet.init(project="p", config=ns, dir=home)
    assert runfleet.config.batch_size == 32 and runfleet.config["model"] == "gpt2"
    runfleet.config.update({"lr": 3e-4})
    runfleet.config.update(Extra())
    runfleet.config.epochs = 3
    run.config["warmup"] = 100
    assert run.config.as_dict() == {"batch_size": 32, "model": "gpt2", "lr": 3e-4,
                                    "dropout": 0.1, "epochs": 3, "warmup": 100}
    with pytest.raises(AttributeError, match="no key 'nope'"):
        _ = runfleet.config.nope
    runfleet.finish()
    assert stored(home, "p", run.id).config == {"batch_size": 32, "model": "gpt2", "lr": 3e-4,
                                               "dropout": 0.1, "epochs": 3, "warmup": 100}


def test_summary_default_override_and_define_metric(home: Path) -> None:
    run = runfleet.init(project="p", dir=home)
    runfleet.define_metric("eval/*", summary="max")
    runfleet.define_metric("loss", summary="min,mean")
    for i, (loss, acc) in enumerate([(3.0, 0.1), (1.0, 0.7), (2.0, 0.5)]):
        runfleet.log({"loss": loss, "eval/acc": acc, "lr": 0.1 * (i + 1)})
    runfleet.summary["best_note"] = "ok"
    run.summary.extra = 1
    runfleet.finish()
    s = stored(home, "p", run.id).summary
    assert s["eval/acc"] == 0.7
    assert s["loss"] == {"min": 1.0, "mean": 2.0}
    assert s["lr"] == pytest.approx(0.3)
    assert s["best_note"] == "ok" and s["extra"] == 1


def test_define_metric_step_metric_is_recorded(home: Path) -> None:
    run = runfleet.init(project="p", dir=home)
    d = runfleet.define_metric("val/*", step_metric="epoch", goal="minimize")
    assert d.step_metric == "epoch"
    for epoch in range(3):
        runfleet.log({"epoch": epoch, "val/loss": 1.0 - epoch / 10})
    runfleet.finish()
    r = stored(home, "p", run.id)
    assert r.metadata["metrics"][0]["step_metric"] == "epoch"
    h = r.history(keys=["epoch", "val/loss"], x="epoch")
    assert h["epoch"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="summary mode"):
        runfleet.init(project="p", dir=home).define_metric("x", summary="median")


def test_alert_is_stored(home: Path) -> None:
    run = runfleet.init(project="p", dir=home)
    runfleet.log({"loss": math.nan})
    runfleet.alert(title="diverged", text="loss is nan", level="warn")
    with pytest.raises(ValueError, match="alert level"):
        runfleet.alert(title="x", text="y", level="loud")
    runfleet.finish()
    (alert,) = stored(home, "p", run.id).alerts()
    assert {k: alert[k] for k in ("title", "text", "level", "step")} == {
        "title": "diverged", "text": "loss is nan", "level": "warn", "step": 1}
    assert abs(alert["time"] - time.time()) < 60


def test_context_manager_finishes_and_records_failure(home: Path) -> None:
    with runfleet.init(project="p", dir=home) as ok:
        ok.log({"x": 1})
    assert stored(home, "p", ok.id).status == "completed"
    with pytest.raises(ZeroDivisionError), runfleet.init(project="p", dir=home) as bad:
        bad.log({"x": 1})
        _ = 1 / 0
    r = stored(home, "p", bad.id)
    assert r.status == "failed"
    assert "ZeroDivisionError" in r.alerts()[-1]["text"]


def test_explicit_steps_commit_false_and_step_property(home: Path) -> None:
    run = runfleet.init(project="p", dir=home)
    runfleet.log({"a": 1.0}, step=10)
    assert run.step == 10  # as in wandb, an explicit step stays open
    runfleet.log({"b": 2.0}, commit=False)
    runfleet.log({"c": 3.0})  # still step 10, then commits
    runfleet.log({"a": 4.0})
    runfleet.log({"d": 5.0}, step=20, commit=True)
    assert run.step == 21
    runfleet.log({"e": 6.0})
    runfleet.finish()
    h = stored(home, "p", run.id).history()
    assert h["_step"].tolist() == [10, 11, 20, 21]
    assert h.loc[h["_step"] == 10, ["a", "b", "c"]].values.tolist() == [[1.0, 2.0, 3.0]]
    assert h.loc[h["_step"] == 11, "a"].item() == 4.0


def test_resume_continues_steps_without_overwriting(home: Path) -> None:
    run = runfleet.init(project="p", id="resume1", config={"lr": 0.1}, dir=home)
    runfleet.define_metric("loss", summary="min")
    for i in range(3):
        runfleet.log({"loss": 5.0 - i})
    runfleet.finish()
    with pytest.raises(ValueError, match="already exists"):
        runfleet.init(project="p", id="resume1", dir=home)
    again = runfleet.init(project="p", id="resume1", resume="allow", config={"bs": 8}, dir=home)
    assert again.step == 3 and again.config.lr == 0.1 and again.config.bs == 8
    runfleet.log({"loss": 9.0})
    runfleet.finish()
    r = stored(home, "p", run.id)
    assert r.history()["loss"].tolist() == [5.0, 4.0, 3.0, 9.0]
    assert r.history()["_step"].tolist() == [0, 1, 2, 3]
    assert r.summary["loss"] == 3.0  # min over the whole run, across the resume
    with pytest.raises(ValueError, match="resume='must'"):
        runfleet.init(project="p", id="absent", resume="must", dir=home)


def test_trackio_style_resume_by_name(home: Path) -> None:
    first = runfleet.init(project="p", name="trial", dir=home)
    runfleet.log({"x": 1})
    runfleet.finish()
    second = runfleet.init(project="p", name="trial", resume="allow", dir=home)
    assert second.id == first.id
    runfleet.log({"x": 2})
    runfleet.finish()
    assert stored(home, "p", first.id).history()["x"].tolist() == [1, 2]


def test_disabled_mode_writes_nothing(home: Path) -> None:
    run = runfleet.init(project="p", mode="disabled", dir=home, config={"a": 1})
    runfleet.log({"x": 1})
    assert runfleet.config.a == 1
    runfleet.finish()
    assert run.finished
    assert not (home / "runfleet.db").exists()


def test_bad_inputs_raise_clear_errors(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runfleet.init(project="p", dir=home)
    with pytest.raises(TypeError, match="dict"):
        runfleet.log(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"keys must be str.*1"):
        runfleet.log({1: 2})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"'x'.*object"):
        runfleet.log({"x": object()})
    runfleet.log({"v": np.arange(3)})  # an array is stored as JSON text, like a list
    with monkeypatch.context() as strict:
        strict.setenv("RUNFLEET_STRICT", "1")
        with pytest.raises(TypeError, match=r"'v'.*Histogram.*RUNFLEET_STRICT"):
            runfleet.log({"v": np.arange(3)})
    with pytest.raises(TypeError, match="step must be an int"):
        runfleet.log({"x": 1}, step="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        runfleet.init(project="p", dir=home, confg={})
    with pytest.raises(ValueError, match="mode"):
        runfleet.init(project="p", dir=home, mode="cloud")
    runfleet.log({"x": 1.5})  # the run still works after rejected calls
    run = runfleet.run
    assert run is not None
    runfleet.finish()
    history = stored(home, "p", run.id).history()
    assert history["x"].dropna().tolist() == [1.5] and history["v"].dropna().tolist() == [
        "[0, 1, 2]"]


def test_log_without_init_is_a_clear_error() -> None:
    with pytest.raises(RunfleetError, match="init"):
        runfleet.log({"x": 1})


def test_cloud_only_arguments_warn_and_are_ignored(home: Path) -> None:
    with pytest.warns(UserWarning, match="space_id"):
        run = runfleet.init(project="p", dir=home, space_id="user/space", entity=None)
    run.finish()


def test_new_init_finishes_the_previous_run(home: Path) -> None:
    first = runfleet.init(project="p", dir=home)
    second = runfleet.init(project="p", dir=home)
    assert first.finished and not second.finished
    second.finish()
    assert stored(home, "p", first.id).status == "completed"


def test_nested_dicts_flatten(home: Path) -> None:
    run = runfleet.init(project="p", dir=home)
    runfleet.log({"train": {"loss": 1.0, "acc": 0.5}})
    runfleet.finish()
    assert set(stored(home, "p", run.id).history().columns) >= {"train.loss", "train.acc"}


def test_api_filters_and_order(home: Path) -> None:
    for lr, acc in [(1e-3, 0.5), (1e-4, 0.9), (1e-3, 0.7)]:
        with runfleet.init(project="f", config={"lr": lr}, dir=home):
            runfleet.log({"acc": acc})
    api = runfleet.Api(home)
    assert len(api.runs("f", filters={"config.lr": 1e-3})) == 2
    assert [r.summary["acc"] for r in api.runs("f", order="-summary.acc")] == [0.9, 0.7, 0.5]
    assert len(api.runs("f", filters={"summary.acc": {"$gt": 0.6}})) == 2
    assert len(api.runs("f", filters={"status": "completed"})) == 3
    assert api.projects() == ["f"] and api.projects()[0].run_count == 3
    with pytest.raises(ValueError, match="unknown project 'nope'"):
        api.runs("nope")

"""Names wandb users reach for: config/summary before init, lists as JSON, Settings, Video,
Audio, plot charts, scan_history, summary_metrics, url, sweeps, termwarn."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runfleet
from runfleet import wandb as shim
from runfleet.errors import UsageError


@pytest.fixture(autouse=True)
def _finish_and_quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNFLEET_SYSTEM_METRICS", "0")
    for name in ("RUNFLEET_STRICT", "WANDB_PROJECT", "WANDB_MODE", "WANDB_NAME",
                 "RUNFLEET_DASHBOARD_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
    runfleet.finish()


# -- 3. config and summary before init ---------------------------------------------------------
def test_config_and_summary_refuse_use_before_init(home: Path) -> None:
    assert runfleet.run is None and not runfleet.config
    with pytest.raises(UsageError, match=r"runfleet\.config\.lr = .*runfleet\.init"):
        runfleet.config.lr = 0.1
    with pytest.raises(UsageError, match=r"runfleet\.config\['lr'\] = "):
        runfleet.config["lr"] = 0.1
    with pytest.raises(UsageError, match=r"runfleet\.config\.update"):
        runfleet.config.update({"lr": 0.1})
    with pytest.raises(UsageError, match=r"runfleet\.summary\['best'\]"):
        runfleet.summary["best"] = 1.0
    with pytest.raises(UsageError, match=r"runfleet\.config"):
        dict(runfleet.config)
    with pytest.raises(runfleet.RunfleetError):  # wandb.Error is RunfleetError
        runfleet.summary.update({"a": 1})
    run = runfleet.init(project="pre", dir=home, config={"lr": 0.2})
    runfleet.config.bs = 8
    runfleet.summary["best"] = 3.0
    runfleet.finish()
    stored = runfleet.Api(home).run("pre", run.id)
    assert stored.config == {"lr": 0.2, "bs": 8} and stored.summary["best"] == 3.0
    with pytest.raises(UsageError):  # finished: no active run again
        runfleet.config.lr = 1


# -- lists and tuples ----------------------------------------------------------------------------
def test_lists_and_tuples_are_stored_as_json_text(home: Path) -> None:
    run = runfleet.init(project="lists", dir=home)
    runfleet.log({"pair": [1, 2.5], "t": (np.float32(0.5), np.int64(3)), "nested": [[1], []],
                  "odd": [float("nan"), float("inf")], "x": 1})
    runfleet.finish()
    (row,) = runfleet.Api(home).run("lists", run.id).scan_history()
    assert row["pair"] == "[1, 2.5]" and json.loads(row["t"]) == [0.5, 3]
    assert json.loads(row["nested"]) == [[1], []] and row["x"] == 1
    assert row["odd"] == "[NaN, Infinity]"


def test_strict_mode_refuses_lists(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLEET_STRICT", "1")
    run = runfleet.init(project="strict", dir=home)
    with pytest.raises(TypeError, match=r"cannot log 'pair'.*RUNFLEET_STRICT"):
        runfleet.log({"pair": [1, 2], "x": 1})
    runfleet.log({"x": 2})
    runfleet.finish()
    assert isinstance(run, runfleet.Run)
    assert list(runfleet.Api(home).run("strict", run.id).scan_history()) == [
        {"_step": 0, "x": 2, "_timestamp": pytest.approx(run.start_time, abs=60)}]


# -- Settings ------------------------------------------------------------------------------------
def test_settings_fill_init_arguments_and_warn_for_cloud_fields(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLEET_SYSTEM_METRICS", "1")  # on, unless the settings say no
    with pytest.warns(UserWarning, match=r"api_key=.*cloud"):
        settings = runfleet.Settings(run_name="from-settings", run_group="g", silent=True,
                                     x_disable_stats=True, api_key="xyz", project="sp")
    assert settings.silent is True and settings.console is None
    run = runfleet.init(dir=home, notes="explicit", settings=settings)
    assert isinstance(run, runfleet.Run)
    assert (run.name, run.group, run.project, run._monitor) == ("from-settings", "g", "sp",
                                                                 None)
    run2 = runfleet.init(project="sp", dir=home, name="mine",
                         settings={"run_name": "ignored", "run_tags": ["a"]})
    assert isinstance(run2, runfleet.Run) and run2._monitor is not None
    assert run2.name == "mine" and run2.tags == ("a",)
    with pytest.raises(TypeError, match=r"settings= takes runfleet\.Settings"):
        runfleet.init(project="sp", dir=home, settings=["mode", "offline"])
    with pytest.warns(UserWarning, match="not a setting runfleet knows"):
        runfleet.Settings(no_such_field=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shim.Settings is runfleet.Settings
        runfleet.Settings(mode="offline", console="off").update(show_info=False)


# -- media ---------------------------------------------------------------------------------------
def test_video_and_audio_are_stored_under_the_home(home: Path, tmp_path: Path) -> None:
    frames = np.zeros((3, 3, 8, 10), dtype=np.uint8)
    frames[1, 0] = 255
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    tone = np.sin(np.linspace(0, 20, 800)).astype(np.float32)
    run = runfleet.init(project="media", dir=home)
    runfleet.log({"video": runfleet.Video(frames, fps=5, caption="c"),
                  "file": runfleet.Video(clip),
                  "sound": runfleet.Audio(tone, sample_rate=8000, caption="tone")})
    runfleet.finish()
    items = {m["key"]: m for m in runfleet.Api(home).run("media", run.id).media()}
    video = items["video"]
    assert video["type"] == "video" and video["path"].endswith(".gif")
    assert video["meta"] == {"caption": "c", "format": "gif", "fps": 5, "frames": 3,
                             "width": 10, "height": 8}
    from PIL import Image as PILImage

    with PILImage.open(video["value"]) as gif:
        assert getattr(gif, "n_frames", 1) == 3 and gif.size == (10, 8)
    assert Path(items["file"]["value"]).read_bytes() == clip.read_bytes()
    assert items["file"]["meta"]["format"] == "mp4"
    samples, rate = items["sound"]["value"]
    assert rate == 8000 and samples.shape == (800, 1)
    assert np.abs(samples[:, 0] - tone).max() < 1e-4
    assert items["sound"]["meta"]["duration"] == 0.1
    assert Path(video["path"]).is_relative_to(home)


def test_bad_media_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        runfleet.Audio(np.zeros(10))
    with pytest.raises(ValueError, match=r"time, channels, height, width"):
        runfleet.Video(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="does not exist"):
        runfleet.Video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="encoder"):
        runfleet.Video(np.zeros((2, 3, 4, 4)), format="mp4")


# -- plots ---------------------------------------------------------------------------------------
def test_plot_charts_are_tables_with_a_chart_spec(home: Path) -> None:
    table = runfleet.Table(columns=["epoch", "acc", "name"],
                           data=[[0, 0.5, "a"], [1, 0.7, "b"], [2, 0.9, "c"]])
    run = runfleet.init(project="plots", dir=home)
    runfleet.log({"line": shim.plot.line(table, "epoch", "acc", title="Accuracy"),
                  "scatter": shim.plot.scatter(table, "epoch", "acc"),
                  "bar": shim.plot.bar(table, "name", "acc", title="Bars"),
                  "series": shim.plot.line_series([0, 1], [[1, 2], [3, 4]], keys=["u", "v"],
                                                  xname="step")})
    runfleet.finish()
    items = {m["key"]: m for m in runfleet.Api(home).run("plots", run.id).media()}
    assert items["line"]["type"] == "table"
    assert items["line"]["meta"]["chart"] == {"type": "line", "title": "Accuracy",
                                              "x": "epoch", "y": "acc"}
    assert items["bar"]["meta"]["chart"] == {"type": "bar", "title": "Bars", "label": "name",
                                             "value": "acc"}
    assert items["scatter"]["value"]["acc"].tolist() == [0.5, 0.7, 0.9]
    series = items["series"]
    assert series["meta"]["chart"]["stroke"] == "lineKey"
    assert series["value"].values.tolist() == [["u", 0, 1], ["u", 1, 2], ["v", 0, 3],
                                               ["v", 1, 4]]
    with pytest.raises(ValueError, match=r"y='loss' is not a column"):
        shim.plot.line(table, "epoch", "loss")
    with pytest.raises(TypeError, match=r"needs a runfleet\.Table"):
        shim.plot.bar([[1, 2]], "a", "b")  # type: ignore[arg-type]


# -- reading back --------------------------------------------------------------------------------
def test_scan_history_pages_and_keys(home: Path) -> None:
    run = runfleet.init(project="scan", dir=home)
    for step in range(7):
        row: dict[str, Any] = {"loss": step * 0.5}
        if step % 3 == 0:
            row["eval"] = step
        runfleet.log(row)
    runfleet.log({"loss": 9.0}, step=6)  # a second point at step 6
    runfleet.summary["best"] = 0.0
    runfleet.finish()
    stored = runfleet.Api(home).run("scan", run.id)
    everything = list(stored.scan_history(page_size=2))
    assert [r["_step"] for r in everything] == [0, 1, 2, 3, 4, 5, 6, 6]
    assert [r["loss"] for r in everything] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0]
    assert [r.get("eval") for r in everything] == [0, None, None, 3, None, None, 6, None]
    assert all(isinstance(r["_timestamp"], float) for r in everything)
    assert list(stored.scan_history(keys=["eval", "loss"], page_size=3)) == [
        {"_step": 0, "eval": 0, "loss": 0.0}, {"_step": 3, "eval": 3, "loss": 1.5},
        {"_step": 6, "eval": 6, "loss": 3.0}]
    assert [r["_step"] for r in stored.scan_history(min_step=2, max_step=4)] == [2, 3, 4]
    assert stored.summary_metrics == stored.summary and stored.summary_metrics["best"] == 0.0
    with pytest.raises(ValueError, match="page_size"):
        next(stored.scan_history(page_size=0))


def test_url_addresses_the_runs_dashboard_page(home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = runfleet.init(project="my exp", dir=home)
    assert run.url == f"http://127.0.0.1:7760/?project=my%20exp&run={run.id}"
    runfleet.finish()
    stored = runfleet.Api(home).run(f"some-entity/my exp/{run.id}")  # wandb's path form
    assert stored.url == run.url
    monkeypatch.setenv("RUNFLEET_DASHBOARD_URL", "http://box:8000/#token=abc")
    assert stored.url == f"http://box:8000/?project=my%20exp&run={run.id}"


# -- the wandb module's own functions ----------------------------------------------------------
def test_wandb_env_variables_and_modes(home: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNFLEET_DIR", str(home))
    monkeypatch.setenv("WANDB_PROJECT", "envp")
    monkeypatch.setenv("WANDB_TAGS", "a, b")
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    run = shim.init(name="r", dir="./wandb-files")
    assert (run.project, run.tags, run.name) == ("envp", ("a", "b"), "r")
    assert "dir='./wandb-files') is ignored" in capsys.readouterr().err
    shim.finish()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    off = shim.init()
    assert off.id == "disabled" and shim.run is off
    shim.finish()
    shim.termwarn("once only", repeat=False)
    shim.termwarn("once only", repeat=False)
    shim.termlog("hello", prefix=False)
    assert capsys.readouterr().err == "runfleet: WARNING once only\nhello\n"


def test_artifacts_are_runfleets_own(home: Path, tmp_path: Path) -> None:
    assert shim.Artifact is runfleet.Artifact
    with pytest.raises(runfleet.RunfleetError, match=r"log_artifact\(\) needs an active run"):
        shim.log_artifact(tmp_path)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    shim.init(project="p", dir=str(home))
    logged = shim.log_artifact(weights, name="m", type="model")
    assert shim.use_artifact("m:latest").version == logged.version == "v0"
    shim.finish()


# -- sweeps --------------------------------------------------------------------------------------
def test_grid_sweep_runs_every_combination(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLEET_DIR", str(home))
    seen: list[dict[str, Any]] = []

    def train() -> None:
        run = shim.init(config={"epochs": 2, "lr": 0.5})
        seen.append(dict(run.config))
        shim.log({"score": run.config["lr"] * run.config["bs"]})

    sweep_id = shim.sweep({"method": "grid", "metric": {"name": "score"},
                           "parameters": {"lr": {"values": [0.1, 0.2]},
                                          "bs": {"values": [4, 8]}, "opt": {"value": "sgd"}}},
                          project="sw")
    shim.agent(sweep_id, function=train)
    assert [(c["lr"], c["bs"], c["opt"], c["epochs"]) for c in seen] == [
        (0.1, 4, "sgd", 2), (0.1, 8, "sgd", 2), (0.2, 4, "sgd", 2), (0.2, 8, "sgd", 2)]
    runs = runfleet.Api(home).runs("sw")
    assert len(runs) == 4 and {r.group for r in runs} == {sweep_id}
    assert {r.status for r in runs} == {"completed"} and shim.run is None
    assert sorted(r.summary["score"] for r in runs) == pytest.approx([0.4, 0.8, 0.8, 1.6])


def test_random_sweep_draws_count_trials(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLEET_DIR", str(home))
    drawn: list[dict[str, Any]] = []
    config = {"method": "random", "seed": 3, "parameters": {
        "lr": {"min": 1e-4, "max": 1e-1, "distribution": "log_uniform_values"},
        "layers": {"min": 1, "max": 4}, "act": {"values": ["relu", "gelu"]}}}
    shim.agent(shim.sweep(config, project="rs"),
               function=lambda: drawn.append(dict(shim.init().config)), count=5)
    assert len(drawn) == 5 and len(runfleet.Api(home).runs("rs")) == 5
    assert all(1e-4 <= d["lr"] <= 1e-1 and d["layers"] in (1, 2, 3, 4)
               and d["act"] in ("relu", "gelu") for d in drawn)
    again: list[dict[str, Any]] = []
    shim.agent(shim.sweep(config, project="rs"),
               function=lambda: again.append(dict(shim.init().config)), count=5)
    assert again == drawn  # the sweep's seed makes the draws repeatable


def test_unsupported_sweeps_say_what_to_use_instead(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNFLEET_DIR", str(home))
    with pytest.raises(UsageError, match=r"method 'bayes'.*runfleet\.GridSearch.*run_fit"):
        shim.sweep({"method": "bayes", "parameters": {"lr": {"values": [1]}}})
    with pytest.raises(UsageError, match=r"distribution 'q_uniform'.*RandomSearch"):
        shim.sweep({"method": "random", "parameters": {
            "lr": {"min": 0, "max": 1, "distribution": "q_uniform"}}})
    with pytest.raises(UsageError, match="grid sweep needs values"):
        shim.sweep({"method": "grid", "parameters": {"lr": {"min": 0, "max": 1}}})
    random_id = shim.sweep({"method": "random", "parameters": {"lr": {"values": [1]}}})
    with pytest.raises(UsageError, match="count="):
        shim.agent(random_id, function=lambda: None)
    with pytest.raises(UsageError, match="unknown sweep"):
        shim.agent("sweep-nope", function=lambda: None)

    def boom() -> None:
        shim.init(project="fails")
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        shim.agent(random_id, function=boom, count=2)
    (failed,) = runfleet.Api(home).runs("fails")
    assert failed.status == "failed" and shim.run is None


def test_table_takes_wandbs_other_shapes(home: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"prompt": ["a", "b"], "score": [0.5, 1.0]})
    from_data = runfleet.Table(data=frame)  # TRL's trainers pass a DataFrame as data
    from_rows = runfleet.Table(columns=["x"], rows=[[1], [2]], allow_mixed_types=True)
    assert (from_data.columns, from_data.data) == (["prompt", "score"], [["a", 0.5], ["b", 1.0]])
    assert from_rows.data == [[1], [2]]

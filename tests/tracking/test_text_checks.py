"""Text UTF-8 cannot encode (a lone surrogate) and structures nested too deeply are refused
where they enter, with a TypeError naming the key; nothing of the refused call is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runfleet
from runfleet.export import export_project, read_long

BAD = "a\ud800b"


def _nested(depth: int, leaf: Any = 1.0) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    out: dict[str, Any] = value
    return out


def test_log_refuses_lone_surrogates_in_values_and_keys(home: Path) -> None:
    run = runfleet.init(project="p", dir=home, id="r")
    with pytest.raises(TypeError, match=r"cannot log 's'.*lone surrogate"):
        runfleet.log({"s": BAD})
    with pytest.raises(TypeError, match=r"cannot log key 'k\\ud800'.*lone surrogate"):
        runfleet.log({"k\ud800": 1.0})
    with pytest.raises(TypeError, match=r"cannot log key 'outer.in\\ud800'"):
        runfleet.log({"outer": {"in\ud800": 1.0}})
    with pytest.raises(TypeError, match=r"cannot log 'outer.s'"):
        runfleet.log({"outer": {"s": "\udcff"}})
    assert run.step == 0  # a refused call changes nothing, not even the step
    runfleet.log({"s": "caf\u00e9 \U0001f600", "v": 1.0})  # other non-ASCII text is fine
    runfleet.finish()
    h = runfleet.Api(home).run("p", "r").history()
    assert h["s"].tolist() == ["caf\u00e9 \U0001f600"] and h["v"].tolist() == [1.0]
    assert h["_step"].tolist() == [0]


def test_config_summary_and_run_fields_refuse_lone_surrogates(home: Path) -> None:
    with pytest.raises(TypeError, match=r"config key 'a.b\[1\]'.*lone surrogate"):
        runfleet.init(project="p", dir=home, config={"a": {"b": ["ok", BAD]}})
    with pytest.raises(TypeError, match=r"config key 'k\\ud800'"):
        runfleet.init(project="p", dir=home, config={"k\ud800": 1})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tags": ["\ud800"]}, "tag"), ({"notes": BAD}, "notes"), ({"name": BAD}, "run name"),
        ({"group": BAD}, "group"), ({"project": BAD}, "project"), ({"id": BAD}, "run id")]
    for kwargs, field in cases:
        with pytest.raises(TypeError, match=f"{field}.*lone surrogate"):
            runfleet.init(**{"project": "p", "dir": home, **kwargs})
    assert runfleet.Api(home).projects() == []  # no refused init created anything

    run = runfleet.init(project="p", dir=home, id="r", config={"lr": 0.1})
    assert isinstance(run, runfleet.Run)
    with pytest.raises(TypeError, match="config key 'x'"):
        runfleet.config.x = BAD
    with pytest.raises(TypeError, match=r"config key 'opt\.name'"):
        runfleet.config.update({"opt": {"name": BAD}})
    with pytest.raises(TypeError, match="summary key 'best'"):
        runfleet.summary["best"] = BAD
    with pytest.raises(TypeError, match="summary key"):
        runfleet.summary[BAD] = 1.0
    with pytest.raises(TypeError, match="tag"):
        run.tags = ["fine", BAD]
    with pytest.raises(TypeError, match="notes"):
        run.notes = BAD
    with pytest.raises(TypeError, match="run name"):
        run.name = BAD
    with pytest.raises(TypeError, match="alert title"):
        runfleet.alert(title=BAD, text="t")
    with pytest.raises(TypeError, match="alert text"):
        runfleet.alert(title="t", text=BAD)
    runfleet.finish()
    stored = runfleet.Api(home).run("p", "r")
    assert stored.config == {"lr": 0.1} and stored.tags == [] and stored.alerts() == []


def test_a_failure_message_with_a_surrogate_is_escaped_not_lost(home: Path) -> None:
    with pytest.raises(ValueError), runfleet.init(project="p", dir=home, id="r"):
        raise ValueError(f"bad file name {BAD}")
    stored = runfleet.Api(home).run("p", "r")
    assert stored.status == "failed"
    assert "bad file name a\\ud800b" in stored.alerts()[0]["text"]


def test_nesting_too_deep_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    run = runfleet.init(project="p", dir=home, id="r")
    with pytest.raises(TypeError, match=r"cannot log 'a': nested more than 100 levels"):
        runfleet.log(_nested(3000))
    with pytest.raises(TypeError, match=r"config key 'deep': nested more than 100 levels"):
        runfleet.config.update({"deep": _nested(3000)})
    with pytest.raises(TypeError, match=r"config key 'deep': nested more than 100 levels"):
        runfleet.config.update({"deep": [1, _nested(3000)]})
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match=r"config key 'loop': nested more than 100 levels"):
        runfleet.config.update({"loop": loop})
    with pytest.raises(TypeError, match=r"summary key 's': nested more than 100 levels"):
        runfleet.summary["s"] = _nested(3000)
    assert run.step == 0
    runfleet.log(_nested(50))  # deep, but within the limit
    runfleet.config.update({"ok": _nested(50)})
    runfleet.finish()
    stored = runfleet.Api(home).run("p", "r")
    assert stored.history()[".".join(["a"] * 50)].tolist() == [1.0]
    out = tmp_path / "e.csv"
    with runfleet.Api(home) as api:
        export_project(api, "p", path=out)
    assert len(read_long(out)) == 1


def test_init_with_a_deep_config_is_refused(home: Path) -> None:
    with pytest.raises(TypeError, match="nested more than 100 levels"):
        runfleet.init(project="p", dir=home, config={"deep": _nested(3000)})

"""The JSON API over a home written by real runfleet processes: answers and refusals."""

from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

import runfleet
from runfleet.dashboard.app import create_app
from tests.dashboard.helpers import DEMO_RUNS, SPIKE_SCRIPT, run_script


def _ids(client: TestClient, **params: Any) -> list[str]:
    res = client.get("/api/runs", params={"project": "demo", **params})
    assert res.status_code == 200, res.text
    return [r["id"] for r in res.json()["runs"]]


def test_projects_and_runs(client: TestClient) -> None:
    projects = client.get("/api/projects").json()
    assert [(p["name"], p["run_count"]) for p in projects] == [("demo", 4)]
    body = client.get("/api/runs", params={"project": "demo"}).json()
    assert [r["name"] for r in body["runs"]] == [name for name, _, _ in DEMO_RUNS]
    first = body["runs"][0]
    assert first["status"] == "completed" and first["config"]["opt"] == "adam"
    assert first["summary"]["best"] == pytest.approx(0.9) and first["last_step"] == 1999
    assert body["config_keys"][:2] == ["layers", "lr"]  # keys that vary come first
    assert "best" in body["summary_keys"] and "sample" not in body["summary_keys"]
    assert body["total"] == 4 and body["cursor"]


def test_runs_filter_search_and_sort_on_the_server(client: TestClient) -> None:
    assert len(_ids(client, filter="config.opt=adam")) == 2
    assert len(_ids(client, filter=["config.lr<0.05", "config.opt=sgd"])) == 2  # run-1, run-3
    names = [r["name"] for r in client.get("/api/runs", params={
        "project": "demo", "sort": "-config.lr"}).json()["runs"]]
    assert names == ["run-0", "run-3", "run-1", "run-2"]
    assert len(_ids(client, search="RUN-1")) == 1
    assert len(_ids(client, search="^run-[02]$", regex="true")) == 2
    assert len(_ids(client, status="completed")) == 4
    assert _ids(client, status="running") == []
    page = client.get("/api/runs", params={"project": "demo", "limit": 1, "offset": 1}).json()
    assert page["total"] == 4 and [r["name"] for r in page["runs"]] == ["run-1"]


@pytest.mark.parametrize(("path", "params", "status", "words"), [
    ("/api/runs", {}, 400, "missing required parameter 'project'"),
    ("/api/runs", {"project": "nope"}, 404, "unknown project"),
    ("/api/runs", {"project": "demo", "limit": "0"}, 400, ">= 1"),
    ("/api/runs", {"project": "demo", "limit": "many"}, 400, "integer"),
    ("/api/runs", {"project": "demo", "regex": "maybe"}, 400, "true or false"),
    ("/api/runs", {"project": "demo", "search": "(", "regex": "1"}, 400, "regular expression"),
    ("/api/runs", {"project": "demo", "filter": "lr"}, 400, "FIELD=VALUE"),
    ("/api/runs", {"project": "demo", "filter": "bogus.x=1"}, 400, "unknown run field"),
    ("/api/runs", {"project": "demo", "sort": "nope"}, 400, "unknown run field"),
    ("/api/runs", {"project": "demo", "status": "sleeping"}, 400, "one of"),
    ("/api/runs", {"project": "demo", "colour": "red"}, 400, "unknown parameter 'colour'"),
    ("/api/series", {"project": "demo", "key": "loss"}, 400, "'runs'"),
    ("/api/series", {"project": "demo", "key": "loss", "runs": ""}, 400, "at least one"),
    ("/api/series", {"project": "demo", "key": "loss", "runs": "zzz"}, 404, "unknown run"),
    ("/api/series", {"project": "demo", "key": "loss", "runs": "x", "buckets": "0"}, 400, ">="),
    ("/api/series", {"project": "demo", "key": "loss", "runs": "x", "start": "nan"}, 400,
     "finite"),
    ("/api/run", {"project": "demo", "run": "zzz"}, 404, "unknown run"),
    ("/api/media/file", {"project": "demo", "run": "zzz", "index": "0"}, 404, "unknown run"),
    ("/api/stream", {"project": "demo", "cursor": "%%%"}, 400, "malformed cursor"),
    ("/api/nothing-here", {}, 404, "Not Found"),
])
def test_bad_requests_get_a_4xx_json_message(client: TestClient, path: str,
                                             params: dict[str, str], status: int,
                                             words: str) -> None:
    res = client.get(path, params=params)
    assert res.status_code == status, res.text
    assert words in res.json()["error"]


def test_series_exact_when_few_points_and_buckets_otherwise(client: TestClient) -> None:
    ids = _ids(client)
    few = client.get("/api/series", params={"project": "demo", "key": "acc",
                                             "runs": ",".join(ids), "start": 100, "end": 149,
                                             "buckets": 100}).json()
    assert few["grid"] is None
    for s in few["series"]:
        assert s["mode"] == "exact" and s["x"] == list(range(100, 150))
    many = client.get("/api/series", params={"project": "demo", "key": "acc",
                                              "runs": ",".join(ids), "buckets": 100}).json()
    assert many["grid"] == {"lo": 0.0, "hi": 1999.0, "buckets": 100}
    s = many["series"][0]
    assert s["mode"] == "buckets" and sum(s["n"]) == 2000 and len(s["min"]) == 100
    run = runfleet.Api(Path(client.app.state.query.home_root)).run("demo", ids[0])  # type: ignore[attr-defined]
    values = run.history(keys=["acc"])["acc"].to_numpy()
    assert s["min"][0] == values[:20].min() and s["max"][-1] == values[-20:].max()
    assert s["mean"][0] == pytest.approx(values[:20].mean())


def test_series_base64_is_the_same_data(client: TestClient) -> None:
    ids = ",".join(_ids(client))
    params: dict[str, Any] = {"project": "demo", "key": "loss", "runs": ids, "buckets": 64}
    plain = client.get("/api/series", params=params).json()
    packed = client.get("/api/series", params={**params, "encoding": "base64"}).json()
    for a, b in zip(plain["series"], packed["series"]):
        mins = np.frombuffer(base64.b64decode(b["min"]["b64"]), "<f8")
        assert mins.tolist() == a["min"]
        counts = np.frombuffer(base64.b64decode(b["n"]["b64"]), "<i4")
        assert counts.tolist() == a["n"]


def test_series_against_time_relative_and_a_metric(client: TestClient) -> None:
    ids = _ids(client)[:2]
    base: dict[str, Any] = {"project": "demo", "key": "loss", "runs": ",".join(ids),
                            "buckets": 5000}
    by_time = client.get("/api/series", params={**base, "x": "time"}).json()
    assert by_time["series"][0]["mode"] == "exact" and by_time["series"][0]["x"][0] > 1e9
    rel = client.get("/api/series", params={**base, "x": "relative"}).json()
    assert 0 <= rel["series"][0]["x"][0] < 60
    by_epoch = client.get("/api/series", params={**base, "x": "epoch"}).json()
    xs = by_epoch["series"][0]["x"]
    assert xs[:3] == [0.0, 0.001, 0.002] and len(xs) == 2000
    bad = client.get("/api/series", params={**base, "x": "nonexistent"})
    assert bad.status_code == 400 and "neither step" in bad.json()["error"]


def test_keys_and_run_detail(client: TestClient) -> None:
    keys = {k["key"]: k for k in client.get("/api/keys", params={"project": "demo"}).json()}
    assert {"loss", "acc", "epoch"} <= set(keys) and keys["loss"]["runs"] == 4
    assert keys["loss"]["chartable"] and not keys["sample"]["chartable"]
    run_id = _ids(client, search="run-1")[0]
    detail = client.get("/api/run", params={"project": "demo", "run": run_id}).json()
    assert detail["config"]["lr"] == 0.01 and detail["alerts"][0]["title"] == "slow start"
    assert {m["type"] for m in detail["media"]} == {"image", "table", "histogram"}
    assert detail["lineage"] == {"parent": None, "children": [], "tree": [
        {"id": run_id, "name": "run-1", "status": "completed", "parent": None,
         "parent_step": None}]}
    by_type = {m["type"]: m["index"] for m in detail["media"]}
    image = client.get("/api/media/file", params={"project": "demo", "run": run_id,
                                                  "index": by_type["image"]})
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    table = client.get("/api/media/file", params={"project": "demo", "run": run_id,
                                                  "index": by_type["table"]}).json()
    assert table["value"]["columns"] == ["a", "b"]
    missing = client.get("/api/media/file", params={"project": "demo", "run": run_id,
                                                    "index": 99})
    assert missing.status_code == 404


def test_export_csv_has_exact_values(client: TestClient) -> None:
    run_id = _ids(client)[0]
    res = client.get("/api/export.csv", params={"project": "demo", "runs": run_id,
                                                "keys": "loss"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    assert "attachment" in res.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(res.text)))
    run = runfleet.Api(Path(client.app.state.query.home_root)).run("demo", run_id)  # type: ignore[attr-defined]
    expected = run.history(keys=["loss"])["loss"].tolist()
    assert [float(r["value"]) for r in rows] == expected  # bit for bit, not approximately


def test_nan_and_infinity_travel_as_strings(tmp_path: Path) -> None:
    runfleet.init(project="odd", dir=tmp_path, system_metrics=False)
    for v in (1.0, math.nan, math.inf, -math.inf, 2.0):
        runfleet.log({"x": v})
    run = runfleet.run
    assert run is not None
    runfleet.finish()
    with TestClient(create_app(tmp_path), base_url="http://127.0.0.1") as c:
        s = c.get("/api/series", params={"project": "odd", "key": "x", "runs": run.id}).json()
        assert s["series"][0]["y"] == [1.0, "NaN", "Infinity", "-Infinity", 2.0]
        runs = c.get("/api/runs", params={"project": "odd"}).json()
        assert runs["runs"][0]["summary"]["x"] == 2.0


def test_one_point_spike_in_100k_steps_survives_the_default_chart(tmp_path: Path) -> None:
    run_script(tmp_path, SPIKE_SCRIPT)
    with TestClient(create_app(tmp_path), base_url="http://127.0.0.1") as c:
        run_id = c.get("/api/runs", params={"project": "spike"}).json()["runs"][0]["id"]
        chart = c.get("/api/series", params={"project": "spike", "key": "loss",
                                             "runs": run_id}).json()  # default: 1,000 buckets
        s = chart["series"][0]
        assert s["mode"] == "buckets" and sum(s["n"]) == 100_000
        assert max(v for v in s["max"] if v is not None) == 50.0
        assert max(v for v in s["min"] if v is not None) < 2.0  # only the spike is high
        zoom = c.get("/api/series", params={"project": "spike", "key": "loss", "runs": run_id,
                                            "start": 73_000, "end": 73_999}).json()
        exact = zoom["series"][0]
        assert exact["mode"] == "exact" and len(exact["x"]) == 1000
        assert exact["y"][exact["x"].index(73_421)] == 50.0


def test_openapi_describes_every_route(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/projects", "/api/runs", "/api/series", "/api/stream", "/api/export.csv",
                 "/api/media/file", "/api/run"):
        assert path in doc["paths"], path
    series = {p["name"]: p for p in doc["paths"]["/api/series"]["get"]["parameters"]}
    assert series["buckets"]["schema"]["maximum"] == 10_000 and series["runs"]["required"]


def test_index_page_and_static_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["x-content-type-options"] == "nosniff"
    if "app.js" in page.text:
        assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../../etc/passwd").status_code == 404

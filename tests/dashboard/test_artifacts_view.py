"""The run detail's artefacts: the JSON endpoint and the section in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import runfleet
from runfleet.dashboard.app import create_app
from tests.dashboard.helpers import auth


@pytest.fixture
def lineage_home(tmp_path: Path) -> dict[str, Any]:
    """Project "p": run "trainer" logs weights v0 and v1 (alias best on v0), run "evaluator"
    uses weights:best and logs a report."""
    home = tmp_path / "home"
    (tmp_path / "w.bin").write_bytes(b"w" * 3000)
    with runfleet.init(project="p", dir=home, name="trainer") as run:
        run.log({"loss": 1.0})
        run.log_artifact(tmp_path / "w.bin", name="weights", type="model", aliases=["best"])
        (tmp_path / "w.bin").write_bytes(b"v" * 10)
        run.log_artifact(tmp_path / "w.bin", name="weights", type="model")
        trainer = run.id
    with runfleet.init(project="p", dir=home, name="evaluator") as run:
        run.log({"acc": 0.5})
        run.use_artifact("weights:best")
        run.log_artifact(tmp_path / "w.bin", name="report", type="eval")
        evaluator = run.id
    return {"home": home, "trainer": trainer, "evaluator": evaluator}


def test_endpoint_lists_what_a_run_logged_and_used(lineage_home: dict[str, Any]) -> None:
    app = create_app(lineage_home["home"])
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as client:
        got = client.get("/api/run/artifacts",
                         params={"project": "p", "run": lineage_home["trainer"]}).json()
        assert [(a["name"], a["version"], a["aliases"]) for a in got["logged"]] == [
            ("weights", "v0", ["best"]), ("weights", "v1", ["latest"])]
        assert got["used"] == []
        v0 = got["logged"][0]
        assert (v0["size"], v0["files"], v0["type"]) == (3000, 1, "model")
        assert v0["used_by"] == [{"project": "p", "run": lineage_home["evaluator"],
                                  "purged": False}]
        got = client.get("/api/run/artifacts",
                         params={"project": "p", "run": lineage_home["evaluator"]}).json()
        assert [(a["name"], a["version"]) for a in got["used"]] == [("weights", "v0")]
        assert got["used"][0]["logged_by"]["run"] == lineage_home["trainer"]
        assert [a["name"] for a in got["logged"]] == ["report"]
        missing = client.get("/api/run/artifacts", params={"project": "p", "run": "nope"})
        assert missing.status_code == 404 and "unknown run 'nope'" in missing.json()["error"]
        spec = client.get("/api/openapi.json").json()
        assert "/api/run/artifacts" in spec["paths"]


def test_run_detail_shows_artefacts_and_opens_their_runs(serve: Any, page: Any,
                                                         lineage_home: dict[str, Any]) -> None:
    srv = serve(lineage_home["home"])
    page.goto(srv.page_url("p"))
    page.click("#run-list .run-name >> text=evaluator")
    page.wait_for_selector("#detail-artifacts[data-loaded='1']")
    used = page.locator("#detail-artifacts table[data-role='used'] tbody tr")
    assert used.count() == 1
    cells = used.locator("td").all_inner_texts()
    assert cells[:7] == ["weights", "v0", "best", "model", "2.9 KiB", "1",
                         lineage_home["trainer"]]
    logged = page.locator("#detail-artifacts table[data-role='logged'] tbody tr")
    assert logged.locator("td").all_inner_texts()[:2] == ["report", "v0"]
    # The run that logged the weights opens on click, with its own artefacts.
    used.locator("button.link").click()
    page.wait_for_function("() => document.querySelector('#detail-name')?.textContent"
                           " === 'trainer'")
    page.wait_for_selector("#detail-artifacts[data-loaded='1']")
    rows = page.locator("#detail-artifacts table[data-role='logged'] tbody tr")
    assert [r.split("\t")[:3] for r in rows.all_inner_texts()] == [
        ["weights", "v0", "best"], ["weights", "v1", "latest"]]
    assert page.inner_text("#detail-artifacts p[data-role='used']") == "Used no artefacts."

"""Control of experiment runs from the dashboard: the ops API (validation, listing, the
controller's state), ops on the live stream, write security, and a real browser clicking
Stop, Resume, Clone and Delete on a real experiment driven by another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import runfleet
from runfleet.api import Api
from runfleet.dashboard import live
from runfleet.dashboard.app import create_app
from runfleet.dashboard.cursor import decode_token, encode_cursor
from runfleet.engine.space import ENGINE_CONFIG_KEYS
from runfleet.store.sqlite import SQLiteStore
from tests.conftest import ROOT, subprocess_env
from tests.dashboard.conftest import ARTIFACTS
from tests.dashboard.helpers import auth

CONFIG = {"trainer": "torch", "hidden": 4, "learning_rate": 0.01, "max_steps": 40,
          "num_chunks": 2, "seed": 42, "warm_start": False}


@pytest.fixture
def ctl_home(tmp_path: Path) -> Path:
    """A home with experiment "ctl" (runs a, b; b a clone of a) and no controller, and a
    plain tracked project "plain"."""
    home = tmp_path / "ctl-home"
    store = SQLiteStore.open(home / "runfleet.db")
    store.create_run("ctl", "a", "run-a", config=CONFIG)
    store.create_run("ctl", "b", "run-b", config={**CONFIG, "learning_rate": 0.02},
                     parent="a", parent_step=20, status="pending")
    store.create_run("plain", "p", "run-p", config={"lr": 1})
    store.close()
    (home / "experiments" / "ctl").mkdir(parents=True)
    (home / "experiments" / "ctl" / "experiment.json").write_text('{"name": "ctl"}')
    return home


@pytest.fixture
def ctl(ctl_home: Path) -> Iterator[TestClient]:
    app = create_app(ctl_home)
    with TestClient(app, base_url="http://127.0.0.1:7760", headers=auth(app)) as c:
        yield c


def _post(c: TestClient, **body: Any) -> Any:
    return c.post("/api/ops", json={"project": "ctl", **body})


def test_ops_are_written_for_the_controller_and_listed(ctl: TestClient, ctl_home: Path
                                                       ) -> None:
    res = _post(ctl, run="a", kind="stop")
    assert res.status_code == 200, res.text
    stop = res.json()
    assert stop["kind"] == "stop" and stop["status"] == "pending"
    assert stop["source"] == "dashboard" and "browser at" in stop["actor"]
    clone = _post(ctl, run="a", kind="clone", args={
        "changes": {"learning_rate": 0.05, "hidden": 8}, "warm_start": True,
        "name": "faster"}).json()
    assert clone["args"] == {"changes": {"learning_rate": 0.05, "hidden": 8},
                             "warm_start": True, "name": "faster"}
    delete = _post(ctl, run="b", kind="delete", args={"purge": True}).json()
    # The ops are rows of the store, as every front door writes them.
    with Api(ctl_home) as api:
        stored = api.store.ops("ctl")
    assert [(o.id, o.kind, o.run, o.source) for o in stored] == [
        (stop["id"], "stop", "a", "dashboard"), (clone["id"], "clone", "a", "dashboard"),
        (delete["id"], "delete", "b", "dashboard")]
    listing = ctl.get("/api/ops", params={"project": "ctl"}).json()
    assert [o["id"] for o in listing["ops"]] == [o.id for o in stored]
    assert set(listing["ops"][0]) == {"id", "project", "kind", "run", "args", "source",
                                      "actor", "status", "reason", "result", "created",
                                      "applied"}
    assert listing["controller_alive"] is False and listing["experiment"] is True
    assert listing["ops_from"] == stop["id"]  # the first op still pending
    assert listing["engine_keys"] == list(ENGINE_CONFIG_KEYS)  # the page's read-only keys
    by_run = ctl.get("/api/ops", params={"project": "ctl", "run": "b"}).json()
    assert [o["kind"] for o in by_run["ops"]] == ["delete"]
    after = ctl.get("/api/ops", params={"project": "ctl", "after": stop["id"]}).json()
    assert [o["id"] for o in after["ops"]] == [clone["id"], delete["id"]]
    page = ctl.get("/api/ops", params={"project": "ctl", "limit": 1}).json()
    assert len(page["ops"]) == 1 and page["more"] is True


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"run": "a", "kind": "explode"}, 400, "unknown op kind 'explode'"),
    ({"kind": "stop"}, 400, "stop needs a run id"),
    ({"run": "", "kind": "stop"}, 400, "needs a run id"),
    ({"run": "zzz", "kind": "stop"}, 404, "unknown run 'zzz' in project 'ctl'"),
    ({"run": "p", "kind": "stop"}, 404, "unknown run 'p'"),  # a run of another project
    ({"run": "a", "kind": "stop", "args": {"purge": True}}, 400, "stop takes no argument"),
    ({"run": "a", "kind": "delete", "args": {"purge": "yes"}}, 400, "purge must be"),
    ({"run": "a", "kind": "stop", "args": [1]}, 400, "'args' must be an object"),
    ({"run": "a", "kind": "stop", "extra": 1}, 400, "unknown field 'extra'"),
    ({"run": "a", "kind": "clone", "args": {"changes": [1, 2]}}, 400,
     "clone changes must map dotted config keys"),
    ({"run": "a", "kind": "clone", "args": {"changes": {"": 1}}}, 400,
     "clone changes must map dotted config keys"),
    ({"run": "a", "kind": "clone", "args": {"changes": {"bogus": 1}}}, 400,
     "unknown config key 'bogus'"),
    ({"run": "a", "kind": "clone", "args": {"changes": {"learning_rat": 1}}}, 400,
     "unknown config key 'learning_rat' (did you mean 'learning_rate'?)"),
    ({"run": "a", "kind": "clone", "args": {"changes": {"num_chunks": 4}}}, 400,
     "set by the experiment"),
    ({"run": "a", "kind": "clone", "args": {"warm_start": "yes"}}, 400,
     "warm_start must be true or false"),
    ({"run": "a", "kind": "clone", "args": {"name": 5}}, 400, "name must be text"),
])
def test_bad_requests_are_refused_with_a_reason(ctl: TestClient, ctl_home: Path,
                                                body: dict[str, Any], status: int,
                                                words: str) -> None:
    res = _post(ctl, **body)
    assert res.status_code == status, res.text
    assert words in res.json()["error"]
    with Api(ctl_home) as api:
        assert api.store.ops("ctl") == []  # nothing was written


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)


@given(kind=st.sampled_from(["stop", "resume", "delete", "clone", "x"]),
       args=st.dictionaries(st.sampled_from(["purge", "changes", "warm_start", "name", "z"]),
                            JSON, max_size=4))
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_any_body_on_a_real_run_is_answered_without_5xx(ctl_home: Path, kind: str,
                                                        args: dict[str, Any]) -> None:
    app = create_app(ctl_home)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        res = c.post("/api/ops", json={"project": "ctl", "run": "a", "kind": kind,
                                       "args": args})
        assert res.status_code in (200, 400), res.text
        if res.status_code == 200:  # written as asked (a clone's changes default to {})
            written = res.json()["args"]
            assert all(written[k] == v for k, v in args.items() if k in written)


def test_other_refusals(ctl: TestClient) -> None:
    res = ctl.post("/api/ops", json={"project": "nope", "run": "a", "kind": "stop"})
    assert res.status_code == 404 and "unknown project 'nope'" in res.json()["error"]
    res = ctl.post("/api/ops", json={"project": "plain", "run": "p", "kind": "stop"})
    assert res.status_code == 400 and "not an experiment" in res.json()["error"]
    res = ctl.post("/api/ops", json={"project": 5, "run": "a", "kind": "stop"})
    assert res.status_code == 400 and "'project'" in res.json()["error"]
    for raw in (b"[1]", b"{", b'{"project": NaN}', b"[" * 100_000 + b"]" * 100_000):
        res = ctl.post("/api/ops", content=raw, headers={"Content-Type": "application/json"})
        assert res.status_code in (400, 413), raw[:20]
        assert "error" in res.json()
    assert ctl.get("/api/ops", params={"project": "nope"}).status_code == 404
    res = ctl.get("/api/ops", params={"project": "ctl", "run": "zzz"})
    assert res.status_code == 404 and "unknown run" in res.json()["error"]
    res = ctl.get("/api/ops", params={"project": "ctl", "after": "-1"})
    assert res.status_code == 400 and "after" in res.json()["error"]
    plain = ctl.get("/api/ops", params={"project": "plain"}).json()
    assert plain["experiment"] is False and plain["controller_alive"] is False


def test_controller_alive_follows_the_lease(ctl: TestClient, ctl_home: Path) -> None:
    import socket

    lease = ctl_home / "experiments" / "ctl" / "controller.json"
    lease.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.time()}))
    assert ctl.get("/api/ops", params={"project": "ctl"}).json()["controller_alive"] is True
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert ctl.get("/api/ops", params={"project": "ctl"}).json()["controller_alive"] is False


def test_cross_site_and_tokenless_op_writes_are_refused(ctl_home: Path) -> None:
    body = {"project": "ctl", "run": "a", "kind": "stop"}
    with TestClient(create_app(ctl_home), base_url="http://127.0.0.1:7760") as c:
        cross = c.post("/api/ops", json=body, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-site" in cross.json()["error"]
        fetch_meta = c.post("/api/ops", json=body, headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch_meta.status_code == 403
        form = c.post("/api/ops", content=b"project=ctl&run=a&kind=stop",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
    app = create_app(ctl_home, token="s3cret", loopback_only=False)
    with TestClient(app, base_url="http://10.1.2.3:7760") as c:
        assert c.post("/api/ops", json=body).status_code == 401
        assert c.get("/api/ops", params={"project": "ctl"}).status_code == 401  # reads too
        assert c.get("/api/ops", params={"project": "ctl"},
                     headers={"Authorization": "Bearer s3cret"}).status_code == 200
        ok = c.post("/api/ops", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    with Api(ctl_home) as api:
        assert [o.source for o in api.store.ops("ctl")] == ["dashboard"]  # only the last


def test_runs_listing_hides_deleted_runs_unless_asked(ctl_home: Path, ctl: TestClient
                                                      ) -> None:
    store = SQLiteStore.open(ctl_home / "runfleet.db")
    store.update_run(store.find_run("ctl", id="b").rid, status="deleted")  # type: ignore[union-attr]
    store.close()
    ids = [r["id"] for r in ctl.get("/api/runs", params={"project": "ctl"}).json()["runs"]]
    assert ids == ["a"]
    every = ctl.get("/api/runs", params={"project": "ctl", "deleted": "true"}).json()["runs"]
    assert [(r["id"], r["status"]) for r in every] == [("a", "running"), ("b", "deleted")]
    detail = ctl.get("/api/run", params={"project": "ctl", "run": "b"}).json()
    assert detail["lineage"]["parent"]["id"] == "a"
    assert [(n["id"], n["parent"], n["parent_step"]) for n in detail["lineage"]["tree"]] == [
        ("a", None, None), ("b", "a", 20)]


def test_op_changes_on_the_live_stream(ctl_home: Path) -> None:
    api = Api(ctl_home)
    writer = SQLiteStore.open(ctl_home / "runfleet.db")
    first = writer.add_op("ctl", "stop", "a", {}, "python")
    watcher = live.LiveWatcher(api, "ctl", None, {})  # no position: only later changes
    assert watcher.poll() == []
    assert watcher.controller == {"experiment": True, "alive": False}
    writer.finish_op(first.id, "applied")
    (name, op), = watcher.poll()
    assert name == "op" and op["id"] == first.id and op["status"] == "applied"
    second = writer.add_op("ctl", "clone", "a", {"changes": {"bogus": 1}}, "cli")
    assert [(n, d["id"], d["status"]) for n, d in watcher.poll()] == [
        ("op", second.id, "pending")]
    assert watcher.poll() == []  # nothing twice
    writer.finish_op(second.id, "rejected", "unknown config key 'bogus'")
    (name, op), = watcher.poll()
    assert op["status"] == "rejected" and op["reason"] == "unknown config key 'bogus'"
    token = watcher.token()
    assert decode_token(token) == ({"a": -1, "b": -1}, second.id + 1)
    # A reconnect from an earlier position gets every op from there (the page upserts).
    again = live.LiveWatcher(api, "ctl", None, {}, ops_from=first.id)
    assert [d["id"] for n, d in again.poll() if n == "op"] == [first.id, second.id]
    with pytest.raises(live.ApiError, match="malformed cursor"):
        decode_token(encode_cursor({"a": 1}, ops_from=-3))
    writer.close()
    api.close()


# -- a real experiment, a real server, a real browser ---------------------------------------

EXPERIMENT = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.fit import TorchConfig
    from tests.engine.models import make_model, regression_data
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=4000,
                                   per_device_train_batch_size=8, delay=0.01), trainer="torch")
    Experiment("ctl", dir=sys.argv[1]).run_fit(space, make_model, regression_data(64),
                                               num_chunks=4, workers=1, progress=False)
""")


def _wait(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _runs(home: Path) -> dict[str, Any]:
    with runfleet.Api(home) as api:
        return {r.name: r for r in api.runs("ctl", include_deleted=True)}


def test_dashboard_buttons_control_a_running_experiment(home: Path, serve: Any, page: Any,
                                                        tmp_path: Path) -> None:
    started = time.monotonic()
    log = (tmp_path / "experiment.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPERIMENT, str(home)], stdout=log, stderr=subprocess.STDOUT,
        env=subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}"))
    try:
        _wait(lambda: (home / "experiments" / "ctl" / "controller.json").exists()
              and len(_runs(home)) == 2, what="the experiment's runs")
        first, second = sorted(_runs(home))
        a = _runs(home)[first].id
        _wait(lambda: _runs(home)[first].last_step >= 2, what="the first run to train")
        page.goto(serve(home).page_url("ctl"))
        row = f"#run-list li.run[data-run='{a}']"
        page.wait_for_selector(f"{row}[data-status='running'] button[data-op='stop']")
        assert page.locator("#controller-note").is_hidden()

        # Stop, with its confirmation: the run stops and the op shows as applied.
        page.click(f"{row} button[data-op='stop']")
        page.wait_for_selector("#confirm-dialog[open]")
        assert "Stop run" in page.inner_text("#confirm-title")
        page.click("#confirm-ok")
        page.wait_for_selector(f"{row}[data-status='stopped']", timeout=15_000)
        page.wait_for_selector(f"{row} .op-status[data-op-kind='stop'][data-op-status='applied']")
        assert _runs(home)[first].status == "stopped"

        # Resume, confirmed from the keyboard (the confirm button has the focus).
        page.click(f"{row} button[data-op='resume']")
        page.wait_for_selector("#confirm-dialog[open]")
        page.keyboard.press("Enter")
        page.wait_for_selector(
            f"{row} .op-status[data-op-kind='resume'][data-op-status='applied']",
            timeout=15_000)
        page.wait_for_selector(f"{row}:not([data-status='stopped'])")

        # Clone with a changed learning rate from the run's detail: a new run appears,
        # with its parent in the lineage.
        page.click(f"{row} .run-name")
        page.wait_for_selector(".detail-head button[data-op='clone']")
        page.click(".detail-head button[data-op='clone']")
        page.wait_for_selector("#clone-dialog[open]")
        # The keys the experiment sets for all runs (engine_keys of GET /api/ops) are fixed.
        assert page.get_attribute(".clone-value[data-key='num_chunks']", "readonly") == ""
        assert page.get_attribute(".clone-value[data-key='learning_rate']", "readonly") is None
        page.fill(".clone-value[data-key='learning_rate']", "0.02")
        page.click("#clone-submit")
        page.wait_for_selector("#clone-status[data-state='applied']", timeout=15_000)
        clone_name = page.inner_text("#clone-open-new")
        page.wait_for_selector(f"#run-list li.run .run-name:text-is('{clone_name}')")
        assert _runs(home)[clone_name].config["learning_rate"] == 0.02
        assert _runs(home)[clone_name].parent == a
        page.wait_for_selector(f"#detail-lineage .tree li[data-run='{a}'] "
                               f"li[data-run='{_runs(home)[clone_name].id}']")
        page.click("#clone-open-new")
        page.wait_for_selector(f"#detail-name:text-is('{clone_name}')")
        assert first in page.inner_text("#lineage-parent")

        # Clone with an unknown key: refused at once with the reason, nothing created.
        page.click(f"{row} .run-name")
        page.wait_for_selector(f"#detail-name:text-is('{first}')")
        page.click(".detail-head button[data-op='clone']")
        page.click("#clone-dialog summary")
        page.fill(".clone-extra-key", "bogus")
        page.fill(".clone-extra-value", "1")
        page.click("#clone-submit")
        page.wait_for_selector("#clone-status[data-state='refused']")
        assert "unknown config key 'bogus'" in page.inner_text("#clone-status")
        # An invalid value is the controller's to judge: rejected, with its reason.
        page.fill(".clone-extra-key", "")
        page.fill(".clone-value[data-key='learning_rate']", "-1")
        page.click("#clone-submit")
        page.wait_for_selector("#clone-status[data-state='rejected']", timeout=15_000)
        assert "learning_rate must be > 0" in page.inner_text("#clone-status")
        page.keyboard.press("Escape")
        page.wait_for_selector("#clone-dialog", state="detached")
        assert len(_runs(home)) == 3  # the refused and the rejected clone made nothing
        # The audit trail of the run lists what the page asked, with source and status.
        page.wait_for_selector("#detail-ops tr[data-op-kind='clone'][data-op-status='rejected']")
        trail = page.inner_text("#detail-ops")
        assert "dashboard" in trail and "learning_rate must be > 0" in trail
        assert page.locator("#detail-ops tr[data-op-status='applied']").count() == 3

        # Delete the clone: it leaves the list; "show deleted" brings it back as deleted.
        clone_id = _runs(home)[clone_name].id
        clone_row = f"#run-list li.run[data-run='{clone_id}']"
        page.click(f"{clone_row} button[data-op='delete']")
        page.click("#confirm-ok")
        page.wait_for_selector(clone_row, state="detached", timeout=15_000)
        assert _runs(home)[clone_name].status == "deleted"
        page.wait_for_selector(f"#detail-lineage li[data-run='{clone_id}'] > "
                               f".status:text-is('deleted')")  # the open detail follows
        page.check("#show-deleted")
        page.wait_for_selector(f"{clone_row}[data-status='deleted'] .status:text-is('deleted')")
        assert page.locator(f"{clone_row} button[data-op]").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-control.png"))

        # Without a controller, the buttons still write ops, pending until it runs again.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        page.wait_for_selector("#controller-note:not([hidden])", timeout=10_000)
        b_row = f"#run-list li.run[data-run='{_runs(home)[second].id}']"
        page.click(f"{b_row} button[data-op='stop']")
        assert "pending until" in page.inner_text("#confirm-dialog")
        page.click("#confirm-ok")
        page.wait_for_selector(f"{b_row} .op-status[data-op-status='pending']")
        assert "until the experiment runs" in page.inner_text(f"{b_row} .op-status")
        with runfleet.Api(home) as api:
            ops = api.store.ops("ctl")
        assert {o.source for o in ops} == {"dashboard"}
        assert [(o.kind, o.status) for o in ops] == [
            ("stop", "applied"), ("resume", "applied"), ("clone", "applied"),
            ("clone", "rejected"), ("delete", "applied"), ("stop", "pending")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    print(f"dashboard control test: {time.monotonic() - started:.1f} s")

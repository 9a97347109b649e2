"""Secrets in a config never reach the store, a tracker or the dashboard: values under keys
like api_key, token, secret or password are stored redacted; the script keeps them."""

from __future__ import annotations

from pathlib import Path

import runfleet
from runfleet.tracking.config import REDACTED, is_secret_key
from runfleet.tracking.mirror import RunfleetSink


def test_secret_config_values_are_stored_redacted(home: Path, tmp_path: Path) -> None:
    mirror = RunfleetSink(tmp_path / "mirror")
    run = runfleet.init(project="sec", dir=home, sinks=[mirror], config={
        "api_key": "sk-live-123", "generator": {"hf_token": "hf_abc", "max_tokens": 64},
        "api_key_env": "OPENAI_API_KEY", "learning_rate": 0.1})
    run.config.update({"db_password": "hunter2", "batch_size": 8})
    run.log({"loss": 1.0})
    assert run.config.api_key == "sk-live-123"  # the script still has its values
    run.finish()

    for stored in (runfleet.Api(home).run("sec", run.id).config,
                   {r.run_id: r for r in mirror.read_project("sec")}[run.id].config):
        assert stored["api_key"] == REDACTED and stored["db_password"] == REDACTED
        assert stored["generator"] == {"hf_token": REDACTED, "max_tokens": 64}
        assert stored["api_key_env"] == "OPENAI_API_KEY" and stored["learning_rate"] == 0.1
        assert stored["batch_size"] == 8
    raw = b"".join(p.read_bytes() for folder in (home, tmp_path / "mirror")
                   for p in folder.rglob("*") if p.is_file())
    assert b"sk-live-123" not in raw and b"hunter2" not in raw and b"hf_abc" not in raw


def test_which_keys_are_secrets() -> None:
    secret = ["api_key", "OPENAI_API_KEY", "token", "hf_token", "secret", "client_secret",
              "password", "db_password", "generator.api_key", "aws_access_key"]
    plain = ["api_key_env", "max_tokens", "tokenizer", "num_tokens", "learning_rate",
             "secretary", "author"]
    assert all(is_secret_key(k) for k in secret), [k for k in secret if not is_secret_key(k)]
    assert not any(is_secret_key(k) for k in plain), [k for k in plain if is_secret_key(k)]

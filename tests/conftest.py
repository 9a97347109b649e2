"""Shared fixtures: every test gets its own home directory and a clean tracker state."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runfleet.sinks import fanout
from runfleet.tracking import homes, session

ROOT = Path(__file__).resolve().parents[1]
# trackio reads TRACKIO_DIR once, when first imported: point it at a folder of this test
# session, so no test writes to the user's ~/.cache/huggingface/trackio.
os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="runfleet-tests-trackio-")


@pytest.fixture(autouse=True)
def _clean_tracker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("RUNFLEET_SYSTEM_METRICS", "0")
    monkeypatch.setenv("RUNFLEET_WORKER_THREADS", "1")  # tiny models; the suite shares 2 cores
    monkeypatch.setenv("RUNFLEET_DIR", str(tmp_path / "default-home"))
    yield
    run = session.active_run()
    if run is not None:
        run.finish()
    fanout.close_all(timeout=60)
    homes.close_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh home directory for the test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Python processes: this checkout's src on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("RUNFLEET_SYSTEM_METRICS", "0")
    env.update(extra)
    return env


PYTHON = sys.executable


def same_value(a: object, b: object) -> bool:
    """Equal in type and value; floats compared bit for bit (NaN equals NaN, -0.0 != 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()  # type: ignore[arg-type]
    return a == b


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny Llama (hidden 32, 2 layers, vocab 400) and its trained tokenizer."""
    from runfleet.demo import build_tiny_llama, load_instructions, train_tokenizer

    rows = load_instructions()
    tokenizer = train_tokenizer([p + c for p, c in zip(rows["prompt"], rows["completion"],
                                                       strict=True)], vocab_size=400)
    path: Path = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_llama(path, tokenizer, hidden_size=32, num_layers=2, num_heads=2)


@pytest.fixture(scope="session")
def instructions() -> Any:
    """The shipped prompt/completion dataset."""
    from runfleet.demo import load_instructions

    return load_instructions()


@pytest.fixture(scope="session")
def preferences() -> Any:
    """The shipped prompt/chosen/rejected dataset."""
    from runfleet.demo import load_preferences

    return load_preferences()


EXAMPLE_PLUGIN = ROOT / "tests" / "plugins" / "example_plugin"


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install the example third-party package (``tests/plugins/example_plugin``: a trainer,
    an executor, a tracker and a stopping policy registered through entry points) for this
    test session, as pip installs any package: into a folder on ``sys.path``, which spawned
    workers and child processes inherit."""
    import importlib
    import subprocess

    target = tmp_path_factory.mktemp("site-packages")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target),
                    str(EXAMPLE_PLUGIN)], check=True)
    sys.path.insert(0, str(target))
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), before) if p)
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


RAY_ENV = {"RUNFLEET_WORKER_THREADS": "1", "RUNFLEET_SYSTEM_METRICS": "0",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}


def start_ray(**init_args: Any) -> None:
    """Start (or join) a small offline Ray instance for tests: no dashboard, a 200 MiB object
    store, workers with this checkout on their path and one thread each."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args: dict[str, Any] = {"address": "local", "num_cpus": 4, "include_dashboard": False,
                            "object_store_memory": 200 * 2**20, "log_to_driver": False,
                            "runtime_env": {"env_vars": RAY_ENV}}
    args.update(init_args)
    ray.init(**args)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray instance for the tests of one module (started once, shut down after)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    start_ray()
    yield
    ray.shutdown()

"""Run the demos (and benchmarks) on Ray: a local offline Ray instance, or a running cluster.

``runfleet demo --executor ray`` uses :func:`demo_executor`: it starts a small local Ray
instance sized to the workers the demo needs (no dashboard, a small object store, no usage
statistics, token authentication off unless ``RAY_AUTH_MODE`` is set), or joins the
cluster at ``--ray-address``, yields a :class:`~runfleet.engine.RayExecutor` and shuts
Ray down (disconnects from a cluster) at the end.

Example:
    >>> with demo_executor(workers=2) as exe:                    # doctest: +SKIP
    ...     run_demo(executor=exe)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from rich.console import Console

from runfleet.engine.ray_executor import RayExecutor

OBJECT_STORE_MB = 200  # a small object store: run states are MBs, not GBs
# Offline defaults for a local instance; each applies only when the variable is unset.
OFFLINE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def local_devices() -> tuple[int, int]:
    """This machine's (CPU cores, CUDA GPUs) as torch sees them (0 GPUs without torch)."""
    gpus = 0
    with contextlib.suppress(ImportError):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return os.cpu_count() or 1, gpus


def default_workers(max_useful: int = 4) -> int:
    """Workers for a local Ray instance: one per GPU, else one per core, at most
    ``max_useful`` (a demo has only so many configs)."""
    cpus, gpus = local_devices()
    return gpus if gpus else max(1, min(max_useful, cpus))


def start_local_ray(num_cpus: int, num_gpus: int | None = None,
                    object_store_mb: int = OBJECT_STORE_MB, **init_args: Any) -> None:
    """Start a local Ray instance that needs no network: no dashboard, an object store of
    ``object_store_mb`` MiB, ``num_cpus`` CPUs (and ``num_gpus`` GPUs, default: Ray
    detects them), and the :data:`OFFLINE_ENV` settings unless already set."""
    import ray

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # address="local": always a new instance, never a cluster found on this machine
    args: dict[str, Any] = {"address": "local", "num_cpus": num_cpus,
                            "include_dashboard": False,
                            "object_store_memory": object_store_mb * 2**20,
                            "log_to_driver": False, "ignore_reinit_error": True}
    if num_gpus is not None:
        args["num_gpus"] = num_gpus
    args.update(init_args)
    ray.init(**args)


@contextlib.contextmanager
def demo_executor(workers: int | None = None, address: str | None = None,
                  console: Console | None = None, max_useful: int = 4
                  ) -> Iterator[RayExecutor]:
    """A :class:`RayExecutor` for a demo, on a local Ray instance started for it (``address``
    None) or on the running cluster at ``address``; Ray is shut down (this process
    disconnected, the cluster left running) on exit.

    On a local instance ``workers`` defaults to :func:`default_workers` and Ray gets exactly
    the CPUs (or GPUs) they reserve, one each; on a cluster it defaults to what the
    cluster holds (see :class:`RayExecutor`).
    """
    import ray

    console = console or Console()
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; shut it down first "
                           "or pass a RayExecutor of your own")
    if address is None:
        n = workers or default_workers(max_useful)
        _, gpus = local_devices()
        # more workers than GPUs share them (as local workers do, round-robin)
        per = {"GPU": min(1.0, gpus / n)} if gpus else {"CPU": 1.0}
        each = f"{per['GPU']:g} GPU" if gpus else "1 CPU"
        console.print(f"starting a local Ray instance: {n} worker(s) with {each} each, "
                      f"no dashboard, {OBJECT_STORE_MB} MiB object store")
        start_local_ray(num_cpus=n, num_gpus=gpus)
        executor = RayExecutor(num_workers=n, resources_per_worker=per)
    else:
        console.print(f"connecting to the Ray cluster at {address}")
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        executor = RayExecutor(address=address, num_workers=workers)
    try:
        console.print(f"workers: {executor.describe()}")
        yield executor
    finally:
        ray.shutdown()
        console.print("Ray shut down" if address is None else
                      f"disconnected from the Ray cluster at {address} (it keeps running)")

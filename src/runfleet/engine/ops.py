"""Control ops as data: every stop, resume, delete or clone request is a row in the store.

The three front doors (Python via :class:`runfleet.Experiment`, the CLI, the dashboard)
call :func:`request_op`; the controller of the experiment applies pending ops in id order
(see :mod:`runfleet.engine.controller`) and marks each ``applied`` or ``rejected`` with a
reason. Ops outlive the controller: a restarted one finds them still pending.

Example:
    >>> op = request_op(home, "sft-demo", "clone", run="abc123",                # doctest: +SKIP
    ...                 args={"changes": {"training_args.learning_rate": 2e-4},
    ...                       "warm_start": True}, source="python")
    >>> wait_op(home, op.id).status                                            # doctest: +SKIP
    'applied'
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from runfleet.home import Home
from runfleet.store.base import OpKind, OpRecord, OpStatus
from runfleet.tracking import homes

SOURCES = ("python", "attach", "cli", "dashboard")


class OpRejectedError(RuntimeError):
    """An op was rejected; the message is the controller's reason."""

    def __init__(self, op: OpRecord) -> None:
        super().__init__(f"{op.kind} of run {op.run} was rejected: {op.reason}")
        self.op = op


def actor() -> str:
    """Who asks: ``user@host pid``."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "?"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def check_request(kind: str, run: str | None, args: dict[str, Any]) -> None:
    """Reject malformed requests before they are written (the controller checks the rest)."""
    if kind not in tuple(OpKind):
        raise ValueError(f"unknown op {kind!r}; use one of {', '.join(tuple(OpKind))}")
    if not run or not isinstance(run, str):
        raise ValueError(f"{kind} needs a run id")
    allowed = {"stop": set(), "resume": set(), "delete": {"purge"},
               "clone": {"changes", "warm_start", "name"}}[kind]
    unknown = set(args) - allowed
    if unknown:
        raise ValueError(f"{kind} takes no argument {sorted(unknown)[0]!r}")
    if kind == "clone":
        changes = args.get("changes", {})
        if not isinstance(changes, dict) or not all(isinstance(k, str) and k
                                                    for k in changes):
            raise ValueError("clone changes must map dotted config keys to values")
        if not isinstance(args.get("warm_start", False), bool):
            raise ValueError("warm_start must be true or false")


def request_op(home: Home, project: str, kind: str, run: str | None,
               args: dict[str, Any] | None = None, source: str = "python") -> OpRecord:
    """Write a pending op for ``run`` of experiment ``project``; return it."""
    args = dict(args or {})
    check_request(kind, run, args)
    return homes.get(home).store.add_op(project, kind, run, args, source, actor())


def wait_op(home: Home, op_id: int, timeout: float | None = None, poll: float = 0.05,
            while_alive: Callable[[], bool] | None = None) -> OpRecord:
    """Wait until the op is applied or rejected and return it; return it still pending
    when ``timeout`` seconds pass (None: no limit) or when ``while_alive()`` says the
    controller that would apply it is gone (checked about once a second)."""
    store = homes.get(home).store
    deadline = None if timeout is None else time.monotonic() + timeout
    checked = time.monotonic()
    op = store.get_op(op_id)
    while op.status == OpStatus.PENDING:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if while_alive is not None and now - checked >= 1.0:
            checked = now
            if not while_alive():
                op = store.get_op(op_id)  # it may have landed just before the end
                break
        time.sleep(poll)
        op = store.get_op(op_id)
    return op

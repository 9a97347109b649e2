"""``runfleet.Settings`` (``wandb.Settings`` under :func:`runfleet.patch_wandb`).

wandb scripts build ``wandb.Settings(...)`` and pass it to ``init(settings=...)``. runfleet
accepts it: the fields that mean something locally become ``init()`` arguments (an explicit
``init()`` argument wins), fields about wandb's own process and console are kept and
ignored, and fields that only make sense with wandb's cloud service are kept, warned about
once and ignored. Every field given stays readable as an attribute.
"""

from __future__ import annotations

import warnings
from typing import Any

#: Settings fields that become ``init()`` arguments: field -> argument.
INIT_FIELDS = {
    "mode": "mode", "project": "project", "run_name": "name", "run_id": "id",
    "run_group": "group", "run_tags": "tags", "run_notes": "notes", "resume": "resume",
}
#: Fields that turn system metrics off when true.
NO_STATS_FIELDS = frozenset({"x_disable_stats", "_disable_stats", "disable_stats"})
#: Fields about wandb's own machinery: accepted silently, no effect.
LOCAL_FIELDS = frozenset({
    "silent", "quiet", "console", "console_multipart", "show_info", "show_warnings",
    "show_errors", "show_colors", "show_emoji", "start_method", "init_timeout",
    "x_disable_meta", "_disable_meta", "x_disable_machine_info", "disable_code",
    "disable_git", "disable_job_creation", "program", "program_relpath", "code_dir",
    "save_code", "root_dir", "sync_dir", "files_dir", "log_internal", "log_user",
    "allow_val_change", "reinit", "x_label", "x_primary", "label_disable", "_stats_pid",
    "heartbeat_seconds", "max_end_of_run_history_metrics", "summary_timeout",
    "x_stats_sampling_interval", "_service_wait", "x_service_wait", "notebook_name",
    "_jupyter", "job_source", "job_name", "strict",
})
#: Fields that only mean something with wandb's cloud service: warned about and ignored.
CLOUD_FIELDS = frozenset({
    "api_key", "base_url", "entity", "organization", "anonymous", "host", "login_timeout",
    "http_proxy", "https_proxy", "identity_token_file", "credentials_file", "sweep_id",
    "launch", "launch_config_path", "sync_tensorboard", "x_server_side_derived_summary",
    "fork_from", "resume_from", "relogin", "force", "app_url", "x_file_stream_timeout_seconds",
})

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, UserWarning, stacklevel=4)


class Settings:
    """Run settings in wandb's shape: ``Settings(mode="offline", run_name="a", ...)``.

    ``mode``, ``project``, ``run_name``, ``run_id``, ``run_group``, ``run_tags``,
    ``run_notes`` and ``resume`` fill the ``init()`` arguments of the same meaning (an
    explicit argument wins); ``x_disable_stats=True`` turns system metrics off. Fields about
    wandb's own process and console (``silent``, ``console``, ``start_method`` ...) are kept
    and have no effect; cloud-only fields (``api_key``, ``base_url``, ``entity`` ...) are
    kept and warned about once; a field runfleet does not know is kept with a warning.

    Example:
        >>> s = Settings(mode="offline", run_name="baseline", silent=True)
        >>> s.init_kwargs()
        {'mode': 'offline', 'name': 'baseline'}
    """

    def __init__(self, **fields: Any) -> None:
        for key in sorted(fields):
            if key in CLOUD_FIELDS:
                _warn_once(f"Settings({key}=...) is a wandb cloud-service setting; ignored "
                           f"(runfleet runs are local)")
            elif key not in INIT_FIELDS and key not in NO_STATS_FIELDS and \
                    key not in LOCAL_FIELDS:
                _warn_once(f"Settings({key}=...) is not a setting runfleet knows; kept "
                           f"and ignored")
        self.__dict__.update(fields)

    def update(self, settings: Settings | dict[str, Any] | None = None, **fields: Any
               ) -> None:
        """Merge other settings (a :class:`Settings` or a dict) and keyword fields."""
        more = dict(settings.__dict__ if isinstance(settings, Settings) else settings or {})
        more.update(fields)
        self.__dict__.update(Settings(**more).__dict__)

    def to_dict(self) -> dict[str, Any]:
        """Every field given, as a dict."""
        return dict(self.__dict__)

    def init_kwargs(self) -> dict[str, Any]:
        """The ``init()`` arguments these settings fill (``system_metrics=False`` for
        ``x_disable_stats=True``)."""
        out = {arg: self.__dict__[key] for key, arg in INIT_FIELDS.items()
               if self.__dict__.get(key) is not None}
        if any(self.__dict__.get(key) for key in NO_STATS_FIELDS):
            out["system_metrics"] = False
        return out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None  # a field not given reads as unset, as wandb's defaults mostly are

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.__dict__.items()))
        return f"Settings({inner})"

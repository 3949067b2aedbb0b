"""Where a DAG run's settings come from (param, else Airflow Variable, else environment) and the key of a
DAG run: shared by the task bodies (``tasks``) and the failure notifier (``notifier``), below both."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def _optional_setting(params: dict[str, Any], name: str) -> str | None:
    """A DAG param if given, else the Airflow Variable ``unitfusion_<name>``, else ``UNITFUSION_<NAME>``.
    A param left empty in the trigger form arrives as ``None`` (or ``""`` from older confs): not given."""
    from airflow.sdk import Variable

    value = params.get(name) or Variable.get(f"unitfusion_{name}", default=None)
    value = value or os.environ.get(f"UNITFUSION_{name.upper()}")
    return str(value) if value else None


def _setting(params: dict[str, Any], name: str) -> str:
    """A setting the pass cannot do without (see ``_optional_setting``)."""
    value = _optional_setting(params, name)
    if value is None:
        raise ValueError(
            f"no {name!r}: set the DAG param, the Airflow Variable unitfusion_{name} "
            f"or the environment variable UNITFUSION_{name.upper()}"
        )
    return value


def _store(params: dict[str, Any]):  # type: ignore[no-untyped-def]
    from pipelines.store import RunStore

    return RunStore(Path(_setting(params, "out")))


def run_key(dag_id: str, run_id: str) -> str:
    """A file-name-safe key for one DAG run: alerts are deduplicated per key (a retry sends nothing twice)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{dag_id}.{run_id}")

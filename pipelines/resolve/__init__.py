"""Entity resolution: from departmental records to the units of the register.

The public surface is small: ``resolve`` turns ``ResolveInputs`` (a batch of records, the state and the
history the last register kept, verdicts, the tokeniser, an engine) into a ``Resolution`` (the register's
tables, and the state and history to keep), doing no IO. The stages live in the modules of this package:
``records`` and ``entities`` (standardisation), ``evidence`` and ``model`` (edges), ``clustering`` and
``identity`` (units and their ids), ``units``, ``persons`` and ``tables`` (rows), composed by ``resolver``.
"""

from pipelines.resolve.engine import DuckDBEngine, Engine
from pipelines.resolve.model import MODEL_PATH, model_version
from pipelines.resolve.resolver import Resolution, ResolveInputs, entity_table, resolve
from pipelines.resolve.state import History, ResolutionState
from pipelines.resolve.types import ResolveSettings

__all__ = [
    "MODEL_PATH",
    "DuckDBEngine",
    "Engine",
    "History",
    "Resolution",
    "ResolutionState",
    "ResolveInputs",
    "ResolveSettings",
    "entity_table",
    "model_version",
    "resolve",
]

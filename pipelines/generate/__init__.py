"""Sample departmental feeds with ground truth, for the demo, the tests and the resolution benchmarks.

``generate(units, seed, out_dir)`` writes ``<feed>.jsonl`` for every contract in ``schemas/feeds/``,
``truth.jsonl`` (feed, record_id → unit_id, null for private persons) and ``units.jsonl`` (the true units
and the conditions planted in them: multi-licence, multi-meter, e-commerce, zombie) and ``anomalies.jsonl``
(unit_id, kind, period: figures planted for the warning rules, and activity trends for the marts:
goes_dormant, tax_falling, pillar_power_halves; see ``anomalies.py``). ``difficulty`` ("default" or "hard",
``DIFFICULTIES``) sets the proportions of the hard cases; see ``difficulty.py``. The feeds added later
(platform merchants, bookkeeping clients; ``added.py``) come from generators of their own, with their truth in
``truth_added.jsonl`` and the units only they show in ``units_added.jsonl``: every other file is as it was.
"""

from pipelines.generate.difficulty import DIFFICULTIES, Difficulty
from pipelines.generate.generator import (
    RECORD_PREFIXES,
    TRUTH_ADDED,
    TRUTH_FILES,
    UNITS_ADDED,
    GenerateSummary,
    generate,
)
from pipelines.generate.units import AS_OF

__all__ = [
    "AS_OF",
    "DIFFICULTIES",
    "RECORD_PREFIXES",
    "TRUTH_ADDED",
    "TRUTH_FILES",
    "UNITS_ADDED",
    "Difficulty",
    "GenerateSummary",
    "generate",
]

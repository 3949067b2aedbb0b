"""The marts' reviewed configuration (``marts.toml``): measures, activity, tier score, lock-on thresholds."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import resources


@dataclass(frozen=True)
class Measure:
    """A monthly figure of ``unit_month``: the sum of one feed's field."""

    name: str
    feed: str
    field: str
    label: str


@dataclass(frozen=True)
class ActivityFlag:
    """A flag of ``unit_month``, set in a month when its measure is above ``above``."""

    name: str
    measure: str
    above: float


@dataclass(frozen=True)
class MartConfig:
    raw: dict[str, Any]

    @property
    def measures(self) -> tuple[Measure, ...]:
        return tuple(
            Measure(name, m["feed"], m["field"], m["label"]) for name, m in self.raw["measures"].items()
        )

    @property
    def activity_flags(self) -> tuple[ActivityFlag, ...]:
        flags = self.raw["activity_flags"].items()
        return tuple(ActivityFlag(name, f["measure"], float(f["above"])) for name, f in flags)

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)

    @property
    def dormant_months(self) -> int:
        return int(self.raw["activity"]["dormant_months"])

    @property
    def look_back_months(self) -> int:
        return int(self.raw["activity"]["look_back_months"])

    @property
    def registration(self) -> dict[str, str]:
        return dict(self.raw["registration"])

    @property
    def tier(self) -> dict[str, Any]:
        return self.raw["tier"]

    @property
    def lockon(self) -> dict[str, Any]:
        return self.raw["lockon"]


def load_config(path: Path | None = None) -> MartConfig:
    """The configuration at ``path``, else the one shipped with the package."""
    config = MartConfig(tomllib.loads((path or resources.MART_RULES).read_text(encoding="utf-8")))
    measures = {m.name for m in config.measures}
    named = {f.measure for f in config.activity_flags}
    named |= {*config.lockon["falling_measures"], *config.lockon["pillar_measures"]}
    unknown = sorted(named - measures)
    if unknown:
        raise ValueError(
            f"activity flags or lock-on lists name unknown measures {unknown}; measures: {sorted(measures)}"
        )
    return config

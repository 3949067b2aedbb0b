"""The marts' reviewed configuration (``marts.toml``): activity, tier score, lock-on thresholds; the measures
and activity flags come from the feed mappings' figures (``schemas/mappings``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pipelines import resources
from pipelines.contracts import expand_per, load_contracts
from pipelines.mappings import mapping, unit_feeds


@dataclass(frozen=True)
class Measure:
    """A monthly figure of ``unit_month``: the sum of the field each feed that gives it maps to it."""

    name: str
    fields: tuple[tuple[str, str], ...]  # (feed, field)
    label: str

    def field_of(self, feed: str) -> str | None:
        return dict(self.fields).get(feed)


@dataclass(frozen=True)
class ActivityFlag:
    """A flag of ``unit_month``, set in a month when its measure is above ``above``."""

    name: str
    measure: str
    above: float


@dataclass(frozen=True)
class MartConfig:
    raw: dict[str, Any]

    @cached_property
    def measures(self) -> tuple[Measure, ...]:
        """The figures the feed mappings name (``[figures]``), in feed order (read once per config)."""
        fields: dict[str, list[tuple[str, str]]] = {}
        labels: dict[str, str] = {}
        for feed in unit_feeds():
            found = mapping(feed)
            for name, field in found.figures.items():
                fields.setdefault(name, []).append((feed, field))
                labels.setdefault(name, found.figure_info[name].label)
        return tuple(Measure(name, tuple(given), labels[name]) for name, given in fields.items())

    @cached_property
    def activity_flags(self) -> tuple[ActivityFlag, ...]:
        """The flags the feed mappings' figures set (``active``), one per flag name."""
        flags = {}
        for feed in unit_feeds():
            for name, info in mapping(feed).figure_info.items():
                if info.active:
                    flags.setdefault(info.active, ActivityFlag(info.active, name, info.above))
        return tuple(flags.values())

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)

    @property
    def dormant_months(self) -> int:
        return int(self.raw["activity"]["dormant_months"])

    @property
    def look_back_months(self) -> int:
        return int(self.raw["activity"]["look_back_months"])

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


def documented_columns(fields: list[dict[str, Any]], config: MartConfig) -> list[str]:
    """A mart's column names from its documented fields (``schemas/marts/<mart>.json``). A field with ``per``
    (``feed``, ``figure``, ``flag``) stands for every feed, figure or activity flag not documented by name,
    so a new department's feed is documented by its mapping."""
    members = {
        "feed": list(load_contracts()),
        "figure": [m.name for m in config.measures],
        "flag": [f.name for f in config.activity_flags],
    }
    return [name for name, _ in expand_per(fields, members)]

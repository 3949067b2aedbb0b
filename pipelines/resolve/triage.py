"""Review triage: which questions evidence already settles, how much the rest matter, and why, in Chinese.

A township checks what codes and the model cannot settle, and only that. Before an item reaches a
township's queue it passes the rules below, in order; the first that holds settles it (the record stays
where the resolver put it, and no one is asked). Measured on generated data (seeds 100+, never the
benchmark's seeds 1–3), nearly every item the rules settle was a right link.

- ``far_below_current``: an uncertain link whose record the model holds in its own unit by a pair at least
  ``ResolveSettings.settle_margin_bits`` stronger (in match weight, log2 of the odds) than the best other
  unit's: the other unit is a million times less likely, whatever the band says.
- ``private_small``: a private person's record (a private waybill sender, a household power account) asked
  about as an uncertain link or a missing registration, with less volume than could make it a unit of its
  own (fewer parcels than ``ecommerce_min_parcels``, less power than ``private_max_kwh``): a wrong answer
  moves a few parcels or a household meter. A rival unit (two units as likely) is still asked.

- ``once_per_pair`` (``ONCE_PER_PAIR``): of the uncertain links between one unit and one candidate unit
  (a licence, its tax and power records all alike to a shop's waybills), only the strongest record's is
  asked: one answer moves the records its codes and links hold together.

A candidate unit whose code differs from the record's (another USCC, or a legacy taxpayer id whose
organisation code is not the candidate's) is never offered (``tables.review_rows``): codes decide that.

What remains is ranked by ``importance``: the size and activity of the units at stake (the record's own unit
and its best candidate): log2(1 + their records) + log10(1 + their tax paid, yuan) + log10(1 + their kWh).
Each item says ``why`` in Chinese from the model's per-comparison match weights (``labels.toml``
[comparisons]), strongest evidence first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pipelines.resolve.types import ResolveSettings
from pipelines.standardise.vocabularies import labels

COMPARISONS = labels("comparisons")  # comparison name → what it compares, as a clerk says it
EVIDENCE_WORDS = labels("evidence_words")  # for / against / missing
SHOWN_EVIDENCE = 5  # comparisons named in an item's why (the strongest)
LEAST_SHOWN = 0.5  # match weights weaker than this (in bits) say nothing a clerk needs


@dataclass(frozen=True)
class Rule:
    name: str
    condition: str  # SQL over an item's features (see ``settled_by_sql``), with {settings} fields


RULES: tuple[Rule, ...] = (
    Rule(
        "far_below_current",
        "reason = 'uncertain_link' AND own_weight IS NOT NULL AND top_weight IS NOT NULL "
        "AND own_weight - top_weight >= {settle_margin_bits}",
    ),
    Rule(
        "private_small",
        "coalesce(is_person, false) AND reason IN ('uncertain_link', 'no_registration_match') "
        "AND coalesce(parcels, 0) < {ecommerce_min_parcels} AND coalesce(kwh, 0) < {private_max_kwh}",
    ),
)


ONCE_PER_PAIR = "once_per_pair"


def settled_by_sql(settings: ResolveSettings) -> str:
    """SQL naming the first rule that settles an item (NULL: a township is asked). Reads the columns reason,
    is_person, parcels, kwh, own_weight (the strongest model pair holding the record in its unit) and
    top_weight (the best candidate's pair), in match weight."""
    values = {
        "settle_margin_bits": float(settings.settle_margin_bits),
        "ecommerce_min_parcels": int(settings.ecommerce_min_parcels),
        "private_max_kwh": float(settings.private_max_kwh),
    }
    cases = " ".join(f"WHEN {rule.condition.format(**values)} THEN '{rule.name}'" for rule in RULES)
    return f"CASE {cases} END"


def match_weight_sql(probability: str) -> str:
    """Splink's match weight (log2 of the odds) of a probability, capped where float64 rounds it to 1."""
    return f"(log2({probability}) - log2(greatest(1.0 - {probability}, 1.1102230246251565e-16)))"


IMPORTANCE_SQL = (
    "round(log2(1 + coalesce(stake_records, 0)) + log10(1 + greatest(coalesce(stake_tax, 0), 0)) "
    "+ log10(1 + greatest(coalesce(stake_kwh, 0), 0)), 2)"
)


def _signed(weight: float) -> str:
    return f"{'+' if weight >= 0 else '−'}{abs(weight):.1f}"


def evidence_text(weights: dict[str, float]) -> str:
    """The model's per-comparison evidence as a clerk reads it ("电话相符 +13.7；字号相符 +10.1；区县不符
    −4.4"), strongest first, comparisons that say almost nothing left out."""
    strong = sorted(
        ((name, w) for name, w in weights.items() if w is not None and abs(w) >= LEAST_SHOWN),
        key=lambda item: (-abs(item[1]), item[0]),
    )[:SHOWN_EVIDENCE]
    parts = []
    for name, weight in strong:
        if name.startswith("tf_"):  # a term-frequency adjustment: how rare the agreeing value is
            word = EVIDENCE_WORDS["rare" if weight > 0 else "common"]
        else:
            word = EVIDENCE_WORDS["for" if weight > 0 else "against"]
        parts.append(f"{COMPARISONS.get(name, name)}{word} {_signed(weight)}")
    return "；".join(parts)


def explain(reason: str, weights_json: str | None, score: float | None, match_weight: float | None) -> str:
    """Why an item is asked, in Chinese, beside its reason: the best candidate's match and its evidence."""
    if score is None:
        return EVIDENCE_WORDS["no_candidate"]
    weights = json.loads(weights_json) if weights_json else {}
    total = (
        f"（合计 {_signed(match_weight)}）"
        if match_weight is not None and math.isfinite(match_weight)
        else ""
    )
    evidence = evidence_text(weights)
    text = f"与最可能的候选单位匹配度 {score:.2f}{total}"
    return f"{text}：{evidence}" if evidence else text

"""Accuracy of a clustering against ground truth: B-cubed and pairwise precision, recall and F1.

Records whose true unit is unknown (private persons) count as their own singleton in the truth; records
the pipeline left unlinked count as singletons in the prediction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 5),
            "recall": round(self.recall, 5),
            "f1": round(self.f1, 5),
        }


def _complete(labels: dict[Hashable, Hashable | None], records: list[Hashable]) -> dict[Hashable, Hashable]:
    return {r: (labels.get(r) if labels.get(r) is not None else ("singleton", r)) for r in records}


def bcubed(truth: dict[Hashable, Hashable | None], predicted: dict[Hashable, Hashable | None]) -> Scores:
    records = list(truth)
    t, p = _complete(truth, records), _complete(predicted, records)
    both = Counter((t[r], p[r]) for r in records)
    t_size, p_size = Counter(t.values()), Counter(p.values())
    precision = sum(n * n / p_size[pc] for (_, pc), n in both.items()) / len(records)
    recall = sum(n * n / t_size[tc] for (tc, _), n in both.items()) / len(records)
    return Scores(precision, recall)


def pairwise(truth: dict[Hashable, Hashable | None], predicted: dict[Hashable, Hashable | None]) -> Scores:
    records = list(truth)
    t, p = _complete(truth, records), _complete(predicted, records)

    def pairs(sizes: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in sizes.values())

    true_positive = pairs(Counter((t[r], p[r]) for r in records))
    predicted_pairs, true_pairs = pairs(Counter(p.values())), pairs(Counter(t.values()))
    return Scores(
        true_positive / predicted_pairs if predicted_pairs else 1.0,
        true_positive / true_pairs if true_pairs else 1.0,
    )

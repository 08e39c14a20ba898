"""Scoring of a results file against a corpus's ground truth, as the corpus README defines it.

R@1: the top-1 match is the expected item. R@T: one global score threshold T is chosen so that at
most 1 % of negative queries match anything at or above it; a query counts if its top-1 is right
and scores at or above T.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Truth:
    query: str
    kind: str
    transform: str
    expected: str


@dataclass(frozen=True)
class Answer:
    match: str
    score: float


def read_truth(corpus: Path) -> list[Truth]:
    with open(corpus / "ground_truth.csv", newline="") as f:
        return [Truth(r["query"], r["kind"], r["transform"], r["expected"])
                for r in csv.DictReader(f)]


def read_results(path: Path) -> dict[str, Answer]:
    with open(path, newline="") as f:
        return {r["query"]: Answer(r["match"], float(r["similarity_score"] or 0))
                for r in csv.DictReader(f)}


def threshold(truth: list[Truth], answers: dict[str, Answer], fpr: float = 0.01) -> float:
    """The lowest score T with at most `fpr` of negatives matching at or above it."""
    negatives = sorted((answers[t.query].score for t in truth if t.kind == "negative"
                        and answers[t.query].match), reverse=True)
    n_neg = sum(1 for t in truth if t.kind == "negative")
    allowed = math.floor(fpr * n_neg)
    if len(negatives) <= allowed:
        return 1e-9
    return math.nextafter(negatives[allowed], math.inf)


def per_family(truth: list[Truth], answers: dict[str, Answer], t: float
               ) -> dict[str, tuple[int, float, float]]:
    """family -> (n, R@1, R@T), plus 'overall' (mean over all queries)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in truth:
        if row.kind != "query":
            continue
        a = answers.get(row.query, Answer("", 0.0))
        right = a.match == row.expected
        for key in (row.transform, "overall"):
            c = counts[key]
            c[0] += 1
            c[1] += right
            c[2] += right and a.score >= t
    return {k: (c[0], c[1] / c[0], c[2] / c[0]) for k, c in sorted(counts.items())}


def false_positive_rate(truth: list[Truth], answers: dict[str, Answer], t: float) -> float:
    neg = [t_ for t_ in truth if t_.kind == "negative"]
    hits = sum(1 for r in neg if answers[r.query].match and answers[r.query].score >= t)
    return hits / len(neg) if neg else 0.0

"""Confidence thresholds from a results file: where precision crosses 99 % (high) and 90 % (medium).

    python bench/calibrate.py --corpus eval-data/image-dev --results results.csv \
        [--corpus /tmp/hard --results hard.csv ...]

Several corpora (each with its results file, in the same order) are pooled: `high` must hold on
all of them at once, and `medium` is the highest of their R@T operating points.

Each query's and each negative's top-1 answer is one decision: right if it is the expected item,
wrong otherwise (every answer to a negative is wrong). For each candidate threshold t, precision is
the share of right answers among those scoring >= t. `high` is the lowest t with precision >= 99 %
at and above it and no negative at or above it. `medium` is the lowest t with precision >= 90 %
that also lets at most 1 % of negatives match (the R@T operating point), so a weak match on a large
catalog is not called medium just because most answers are right. Both are rounded up to the next
0.05, headroom for catalogs that are not the dev corpus. The printed values go into
`IMAGE` in src/medialayer/calibration.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import Answer, Truth, read_results, read_truth, threshold  # noqa: E402


def decisions(truth: list[Truth], answers: dict[str, Answer]) -> list[tuple[float, bool, bool]]:
    """(score, right, is_negative) for every answer that named a match, best score first."""
    out = []
    for row in truth:
        a = answers.get(row.query)
        if a and a.match:
            out.append((a.score, row.kind == "query" and a.match == row.expected,
                        row.kind == "negative"))
    return sorted(out, key=lambda d: -d[0])


def lowest_threshold(ds: list[tuple[float, bool, bool]], precision: float,
                     allow_negatives: bool) -> float:
    """The lowest score t such that every threshold >= t keeps `precision` (and no negative)."""
    best, right, total = 1.0, 0, 0
    seen_negative = False
    for i, (score, ok, negative) in enumerate(ds):
        right += ok
        total += 1
        seen_negative |= negative
        if seen_negative and not allow_negatives:
            break
        if right / total < precision:
            break
        if i + 1 == len(ds) or ds[i + 1][0] < score:  # only cut between distinct scores
            best = score
    return best


def round_up(t: float, step: float = 0.05) -> float:
    return min(1.0, math.ceil(round(t / step, 6)) * step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, action="append", required=True)
    ap.add_argument("--results", type=Path, action="append", required=True)
    args = ap.parse_args()
    if len(args.corpus) != len(args.results):
        ap.error("give one --results per --corpus")
    sets = [(c.name, decisions(read_truth(c), read_results(r)),
             threshold(read_truth(c), read_results(r)))
            for c, r in zip(args.corpus, args.results, strict=True)]
    pooled = sorted((d for _, ds, _ in sets for d in ds), key=lambda d: -d[0])
    high = round_up(lowest_threshold(pooled, 0.99, allow_negatives=False))
    medium = round_up(max(lowest_threshold(pooled, 0.90, allow_negatives=True),
                          *(t for _, _, t in sets)))
    print("| set | label | band | answers | precision | negatives |")
    print("|---|---|---|---|---|---|")
    for name, ds in [*((n, d) for n, d, _ in sets), ("all", pooled)]:
        for label, t, top in (("high", high, 2.0), ("medium", medium, high)):
            chosen = [d for d in ds if t <= d[0] < top]
            prec = sum(d[1] for d in chosen) / max(1, len(chosen))
            negs = sum(d[2] for d in chosen)
            band = f">= {t:.2f}" if top > 1 else f"{t:.2f}-{top:.2f}"
            print(f"| {name} | {label} | {band} | {len(chosen)} | {100 * prec:.2f} % | {negs} |")
    print(f"IMAGE = Calibration(high={high:.4f}, medium={medium:.4f})")


if __name__ == "__main__":
    main()

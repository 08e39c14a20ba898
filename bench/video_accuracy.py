"""Accuracy on a video corpus in the dev layout (catalog.csv, queries.csv, catalog/, queries/).

    python bench/video_accuracy.py --corpus eval-data/video-dev --out results.csv [--no-peers]

Indexes the catalog's non-negative rows through the public library API into a fresh data
directory, searches every query, writes `query,match,similarity_score,confidence` per query and
prints R@1 and R@T per family, T and the false-positive rate, the reference-start error of
excerpt queries, and fingerprinting speed and size. In the same run it scores the peers (see
bench/video_peers.py): vpdq (when installed; `make bench-video-peers`) and a per-frame dHash at
1 fps.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see docs/benchmarks-video.md

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# This folder goes last: as the script's folder it leads sys.path, where bench/http.py would
# shadow the standard library's `http` (which the service's httpx imports).
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).parent))
from medialayer import MediaLayer  # noqa: E402
from medialayer.kinds.video import frames  # noqa: E402

from evaluation import Answer, Truth, false_positive_rate, per_family, threshold  # noqa: E402
from video_peers import PEERS, Cost, run_peer  # noqa: E402


@dataclass(frozen=True)
class Corpus:
    root: Path
    catalog: dict[str, Path]  # id -> file (negatives left out)
    durations: dict[str, float]
    truth: list[Truth]
    offsets: dict[str, float]  # query -> offset_s, for excerpt queries


def read_corpus(root: Path) -> Corpus:
    with open(root / "catalog.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["negative"] != "1"]
    with open(root / "queries.csv", newline="") as f:
        queries = list(csv.DictReader(f))
    truth = [Truth(q["path"], "negative" if q["is_negative"] == "1" else "query", q["family"],
                   q["truth_id"]) for q in queries]
    offsets = {q["path"]: float(q["offset_s"]) for q in queries
               if q["is_negative"] != "1" and float(q["offset_s"] or 0) > 0}
    return Corpus(root, {r["id"]: root / r["path"] for r in rows},
                  {r["id"]: float(r["duration"]) for r in rows}, truth, offsets)


def run_medialayer(corpus: Corpus, out: Path) -> tuple[dict[str, Answer], dict[str, float]]:
    """Answers, and each excerpt query's reported reference start."""
    starts: dict[str, float] = {}
    answers: dict[str, Answer] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        ml = MediaLayer(data_dir)
        names = {ml.index(path, media_type="video", name=cid).id: cid
                 for cid, path in corpus.catalog.items()}
        t0 = time.perf_counter()
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "match", "similarity_score", "confidence"])
            for row in corpus.truth:
                hits = ml.search(corpus.root / row.query, media_type="video", top_k=1).results
                top = hits[0] if hits else None
                match = names[top.media.id] if top else ""
                score = top.similarity_score if top else 0.0
                w.writerow([row.query, match, f"{score:.4f}", top.confidence if top else ""])
                answers[row.query] = Answer(match, score)
                if top and top.segments:
                    starts[row.query] = min(s.reference_start for s in top.segments)
        elapsed = time.perf_counter() - t0
        ml.close()
    print(f"medialayer: searched {len(corpus.truth)} queries in {elapsed:.1f} s "
          f"({1000 * elapsed / len(corpus.truth):.0f} ms/query, query fingerprinting included)",
          file=sys.stderr)
    return answers, starts


def medialayer_cost(corpus: Corpus) -> Cost:
    """CPU seconds and stored bytes of the catalog's fingerprints (decoding included)."""
    cpu = 0.0
    size = 0
    for path in corpus.catalog.values():
        t = time.process_time()
        fp = frames.fingerprint(path)
        cpu += time.process_time() - t
        size += len(frames.encode(fp))
    return Cost(cpu, size)


def report(corpus: Corpus, systems: dict[str, dict[str, Answer]], costs: dict[str, Cost],
           starts: dict[str, float]) -> None:
    minutes = sum(corpus.durations.values()) / 60
    results = {}
    print("\n| system | T | R@1 | R@T | FPR at T | x real time per core | bytes per minute |")
    print("|---|---|---|---|---|---|---|")
    for name, answers in systems.items():
        t = threshold(corpus.truth, answers)
        results[name] = per_family(corpus.truth, answers, t)
        _, r1, rt = results[name]["overall"]
        cost = costs[name]
        print(f"| {name} | {t:.4g} | {r1:.3f} | {rt:.3f} | "
              f"{false_positive_rate(corpus.truth, answers, t):.3f} | "
              f"{60 * minutes / max(cost.cpu, 1e-9):.0f} | {cost.size / minutes:,.0f} |")
    names = list(systems)
    print("\nR@1 / R@T per family:\n")
    print("| family | n | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for family in results[names[0]]:
        n = results[names[0]][family][0]
        cells = " | ".join(f"{results[s][family][1]:.2f} / {results[s][family][2]:.2f}"
                           for s in names)
        print(f"| {family} | {n} | {cells} |")
    right = [q for q in corpus.offsets if q in starts
             and systems["medialayer"][q].match == _expected(corpus, q)]
    within = sum(abs(starts[q] - corpus.offsets[q]) <= 1.0 for q in right)
    print(f"\nexcerpt queries matched top-1: {len(right)} of {len(corpus.offsets)}; reported "
          f"reference start within 1 s of the truth: {within} of {len(right)}")


def _expected(corpus: Corpus, query: str) -> str:
    return next(t.expected for t in corpus.truth if t.query == query)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    corpus = read_corpus(args.corpus)
    answers, starts = run_medialayer(corpus, args.out)
    systems = {"medialayer": answers}
    costs = {"medialayer": medialayer_cost(corpus)}
    if not args.no_peers:
        for name in PEERS:
            found = run_peer(name, corpus.catalog, corpus.root, [t.query for t in corpus.truth])
            if found is not None:
                systems[name], costs[name] = found
    report(corpus, systems, costs, starts)


if __name__ == "__main__":
    main()

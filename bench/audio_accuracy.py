"""Accuracy, speed and size on an audio corpus in the dev layout (../shared/eval/av/README.md).

    python bench/audio_accuracy.py --corpus /work/main/eval-data/audio-dev --out results.csv \
        [--peers]

Indexes the catalog rows of catalog.csv that are not negatives through the library API into a
fresh data directory, searches every query of queries.csv, writes
`query,match,similarity_score,confidence` per query, and prints R@1 and R@T per family, T, the
false-positive rate at T, the reference-start error of excerpt queries, the speed (catalog
seconds per CPU second, file to fingerprint), bytes per hour and search time. With --peers,
Chromaprint and audfprint run on the same files in the same run (bench/audio_peers.py).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# after the standard library: bench/http.py would shadow the `http` package that httpx imports
_BENCH = Path(__file__).parent.resolve()
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]
from medialayer import MediaLayer  # noqa: E402
from medialayer.kinds.audio import fingerprint  # noqa: E402

from audio_peers import PeerRun, available  # noqa: E402
from evaluation import Answer, Truth, false_positive_rate, per_family, threshold  # noqa: E402

EXCERPT_TOLERANCE = 0.5
"""Seconds: how far an excerpt's reported reference start may be from the truth."""


@dataclass(frozen=True)
class Query:
    path: str
    family: str
    truth: str  # catalog id, "" for negatives
    offset: float
    speed: float


def read_corpus(corpus: Path) -> tuple[list[tuple[str, Path, float]], list[Query]]:
    with open(corpus / "catalog.csv", newline="") as f:
        catalog = [(r["id"], corpus / r["path"], float(r["duration"]))
                   for r in csv.DictReader(f) if "NEGATIVE" not in r["kind"]]
    with open(corpus / "queries.csv", newline="") as f:
        queries = [Query(r["path"], r["family"], r["truth_id"], float(r["offset_s"] or 0),
                         float(r["speed"] or 1)) for r in csv.DictReader(f)]
    return catalog, queries


def truths(queries: list[Query]) -> list[Truth]:
    return [Truth(q.path, "query" if q.truth else "negative", q.family, q.truth)
            for q in queries]


def run_medialayer(corpus: Path, catalog: list[tuple[str, Path, float]], queries: list[Query],
                   out: Path) -> tuple[PeerRun, list[float]]:
    """Our run, as a PeerRun, plus the reference-start error of each excerpt query."""
    with tempfile.TemporaryDirectory() as data_dir:
        ml = MediaLayer(data_dir)
        names = {ml.index(path, "audio", external_id=clip).id: clip
                 for clip, path, _ in catalog}
        hours = sum(d for _, _, d in catalog) / 3600
        answers: dict[str, tuple[str, float]] = {}
        errors: list[float] = []
        search_cpu = 0.0
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "match", "similarity_score", "confidence"])
            for q in queries:
                t0 = time.process_time()
                hits = ml.search(corpus / q.path, "audio", top_k=1).results
                search_cpu += time.process_time() - t0
                top = hits[0] if hits else None
                match = names[top.media.id] if top else ""
                score = top.similarity_score if top else 0.0
                w.writerow([q.path, match, f"{score:.4f}", top.confidence if top else ""])
                answers[q.path] = (match, score)
                if top and q.offset > 0 and match == q.truth and top.segments:
                    s = top.segments[0]
                    errors.append(s.reference_start - (q.offset + q.speed * s.query_start))
        sizes = ml.index_sizes().get("audio", (0, 0))
        ml.close()
    speed, stored = fingerprint_speed(catalog)
    print(f"MediaLayer: index {sizes[1] / hours:,.0f} bytes per hour of audio, "
          f"stored fingerprints {stored / hours:,.0f} bytes per hour", file=sys.stderr)
    return PeerRun(answers, speed, sizes[1], search_cpu / len(queries)), errors


def fingerprint_speed(catalog: list[tuple[str, Path, float]]) -> tuple[float, int]:
    """Catalog seconds per CPU second from file to fingerprint (decoding included), as the
    peers are timed, and the bytes the catalog stores for them."""
    cpu = time.process_time()
    prints = [fingerprint.fingerprint_path(path) for _, path, _ in catalog]
    speed = sum(d for _, _, d in catalog) / (time.process_time() - cpu)
    return speed, sum(len(fingerprint.encode(p)) for p in prints)


def report(catalog: list[tuple[str, Path, float]], queries: list[Query],
           runs: dict[str, PeerRun], errors: list[float]) -> None:
    truth = truths(queries)
    tables = {}
    for name, run in runs.items():
        answers = {q: Answer(m, s) for q, (m, s) in run.answers.items()}
        t = threshold(truth, answers)
        tables[name] = (t, false_positive_rate(truth, answers, t), per_family(truth, answers, t))
    names = list(runs)
    print("| family (n) | " + " | ".join(f"{n} R@1 / R@T" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    families = list(tables[names[0]][2])
    for fam in [f for f in families if f != "overall"] + ["overall"]:
        n = tables[names[0]][2][fam][0]
        cells = [f"{tables[x][2][fam][1]:.3f} / {tables[x][2][fam][2]:.3f}" for x in names]
        label = f"**{fam}** ({n})" if fam == "overall" else f"{fam} ({n})"
        print(f"| {label} | " + " | ".join(cells) + " |")
    minutes = sum(d for _, _, d in catalog) / 60
    rows = [
        ("threshold T", lambda x: f"{tables[x][0]:.4f}"),
        ("FPR on negatives at T", lambda x: f"{100 * tables[x][1]:.2f} %"),
        ("x real time per core", lambda x: f"{runs[x].speed:,.0f}"),
        ("bytes per minute (index)", lambda x: f"{runs[x].stored_bytes / minutes:,.0f}"),
        ("search ms per query (CPU)", lambda x: f"{1000 * runs[x].search_seconds:.1f}"),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(x) for x in names) + " |")
    if errors:
        within = sum(abs(e) <= EXCERPT_TOLERANCE for e in errors)
        print(f"\nexcerpt queries found: {len(errors)}; reference start within "
              f"+-{EXCERPT_TOLERANCE} s: {within}; largest error {max(map(abs, errors)):.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--peers", action="store_true", help="also run Chromaprint and audfprint")
    args = ap.parse_args()
    catalog, queries = read_corpus(args.corpus)
    ours, errors = run_medialayer(args.corpus, catalog, queries, args.out)
    runs = {"MediaLayer": ours}
    if args.peers:
        paths = [args.corpus / q.path for q in queries]
        for name, peer in available().items():
            run = peer(catalog, paths)
            by_path = {str(args.corpus / q.path): q.path for q in queries}
            run.answers = {by_path[p]: a for p, a in run.answers.items()}
            runs[name] = run
    report(catalog, queries, runs, errors)


if __name__ == "__main__":
    main()

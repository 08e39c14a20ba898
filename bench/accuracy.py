"""Accuracy on an image corpus (catalog/, queries/, negatives/, ground_truth.csv).

    python bench/accuracy.py --corpus eval-data/image-dev --out results.csv [--peers]
        [--distractors N [--distractor-keypoints K] [--distractor-dir /tmp/ml-distractors]]

Indexes catalog/ through the public library API into a fresh data directory, searches every query
and negative, writes `query,match,similarity_score,confidence` per row, and prints R@1 and R@T per
edit family. With --peers it scores imagehash dhash/phash and PDQ (8 dihedral query hashes) on the
same files in the same run.

With --distractors N the data directory starts as a copy of a catalog of N synthetic image rows
in the corpus's tenant (`bench/scale.py`'s rows: random codes and, with --distractor-keypoints,
K random descriptors each), written once under --distractor-dir and kept for the next run; the
corpus is indexed on top, so every search also faces N strangers in both tiers.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

# bench/ goes last, not first: its http.py would otherwise shadow the standard library's
# http package, which httpx (imported by medialayer) needs.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from medialayer import MediaLayer  # noqa: E402

from evaluation import Answer, false_positive_rate, per_family, read_truth, threshold  # noqa: E402


def with_distractors(data_dir: Path, cache: Path, items: int, keypoints: int) -> None:
    """Start `data_dir` as a copy of the cached catalog of `items` distractor rows."""
    from scale import catalog_path, populate

    from medialayer.service import DEFAULT_TENANT

    source = catalog_path(cache, items, keypoints)
    t0 = time.perf_counter()
    populate(source, items, keypoints, tenant=DEFAULT_TENANT)
    shutil.copyfile(source, data_dir / source.name)
    print(f"{items} distractors ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


def run_medialayer(corpus: Path, out: Path, extra: bool, distractors: int = 0,
                   keypoints: int = 0, cache: Path | None = None) -> dict[str, Answer]:
    truth = read_truth(corpus)
    catalog = sorted((corpus / "catalog").iterdir())
    if extra and (corpus / "extra" / "catalog").is_dir():
        catalog += sorted((corpus / "extra" / "catalog").iterdir())
    with tempfile.TemporaryDirectory(dir=cache) as data_dir:
        if distractors:
            with_distractors(Path(data_dir), cache or Path(data_dir), distractors, keypoints)
        ml = MediaLayer(data_dir)
        ml.indexes.wait("image")
        t0 = time.perf_counter()
        names = {}
        for path in catalog:
            names[ml.index(path).id] = str(path.relative_to(corpus))
        t1 = time.perf_counter()
        answers: dict[str, Answer] = {}
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "match", "similarity_score", "confidence"])
            for row in truth:
                hits = ml.search(corpus / row.query, top_k=1).results
                top = hits[0] if hits else None
                match = names[top.media.id] if top else ""
                score = top.similarity_score if top else 0.0
                w.writerow([row.query, match, f"{score:.4f}", top.confidence if top else ""])
                answers[row.query] = Answer(match, score)
        t2 = time.perf_counter()
        ml.close()
    print(f"indexed {len(catalog)} in {t1 - t0:.1f}s; searched {len(truth)} in {t2 - t1:.1f}s "
          f"({1000 * (t2 - t1) / len(truth):.1f} ms/query)", file=sys.stderr)
    return answers


def run_peers(corpus: Path) -> dict[str, dict[str, Answer]]:
    """Global-hash peers with brute-force nearest search; score = 1 - distance/bits."""
    import imagehash
    import numpy as np
    import pdqhash
    from PIL import Image, ImageOps

    def pdq(im: Image.Image) -> np.ndarray:
        return pdqhash.compute(np.asarray(im.convert("RGB")))[0].astype(bool)

    def dihedral(im: Image.Image) -> list[Image.Image]:
        ims = [im.rotate(a, expand=True) for a in (0, 90, 180, 270)]
        return ims + [ImageOps.mirror(i) for i in ims]

    truth = read_truth(corpus)
    catalog = sorted(p for p in (corpus / "catalog").iterdir())
    peers = {
        "imagehash dhash": (lambda im: [imagehash.dhash(im).hash.ravel()], 64),
        "imagehash phash": (lambda im: [imagehash.phash(im).hash.ravel()], 64),
        "PDQ 8 dihedral": (lambda im: [pdq(i) for i in dihedral(im)], 256),
    }
    out: dict[str, dict[str, Answer]] = {}
    for name, (hasher, bits) in peers.items():
        ref = np.array([hasher(Image.open(p))[0] for p in catalog])
        answers = {}
        for row in truth:
            q = np.array(hasher(Image.open(corpus / row.query)))
            d = (q[:, None, :] != ref[None, :, :]).sum(axis=2).min(axis=0)
            i = int(d.argmin())
            answers[row.query] = Answer(str(catalog[i].relative_to(corpus)), 1 - d[i] / bits)
        out[name] = answers
    return out


def report(corpus: Path, systems: dict[str, dict[str, Answer]]) -> None:
    truth = read_truth(corpus)
    tables = {}
    for name, answers in systems.items():
        t = threshold(truth, answers)
        tables[name] = (t, false_positive_rate(truth, answers, t), per_family(truth, answers, t))
    names = list(systems)
    print("| family (n) | " + " | ".join(f"{n} R@1 / R@T" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    families = list(next(iter(tables.values()))[2])
    for fam in [f for f in families if f != "overall"] + ["overall"]:
        n = tables[names[0]][2][fam][0]
        cells = [f"{100 * tables[x][2][fam][1]:.1f} / {100 * tables[x][2][fam][2]:.1f}"
                 for x in names]
        label = f"**{fam}** ({n})" if fam == "overall" else f"{fam} ({n})"
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| threshold T (score) | " + " | ".join(f"{tables[x][0]:.4f}" for x in names) + " |")
    print("| FPR on negatives at T | " + " | ".join(f"{100 * tables[x][1]:.2f}%" for x in names)
          + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--peers", action="store_true", help="also score imagehash and PDQ")
    ap.add_argument("--extra", action="store_true", help="add extra/catalog distractors")
    ap.add_argument("--distractors", type=int, default=0,
                    help="synthetic image rows in the catalog before the corpus")
    ap.add_argument("--distractor-keypoints", type=int, default=0,
                    help="random descriptors per distractor row (0: global codes only)")
    ap.add_argument("--distractor-dir", type=Path, default=Path("/tmp/ml-distractors"),
                    help="where the distractor catalogs are kept between runs")
    args = ap.parse_args()
    cache = args.distractor_dir if args.distractors else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    systems = {"MediaLayer": run_medialayer(args.corpus, args.out, args.extra, args.distractors,
                                            args.distractor_keypoints, cache)}
    if args.peers:
        systems.update(run_peers(args.corpus))
    report(args.corpus, systems)


if __name__ == "__main__":
    main()

"""File-to-fingerprint speed, images per second on one core, against imagehash and PDQ.

    python bench/speed.py --corpus eval-data/image-dev [--files catalog|all] [--limit 400]

`--files catalog` times the catalog's JPEGs (800-1200 px photos, the common case); `all` mixes in
the queries (PNG screenshots and WebP too, which no decoder can shrink while decoding).

Every method reads the same files from disk (already in the page cache) and hashes them in this
one process; the best of `--repeat` passes is reported, since the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pdqhash
from PIL import Image

from medialayer.kinds.image import encode, fingerprint_bytes


def imagehash_dhash(data: bytes) -> object:
    """imagehash with its best decode: JPEG draft mode straight to a small grayscale image."""
    im = Image.open(io.BytesIO(data))
    im.draft("L", (64, 64))
    return imagehash.dhash(im)


def pdq(data: bytes) -> object:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return pdqhash.compute(np.asarray(im))


METHODS: dict[str, Callable[[bytes], object]] = {
    "MediaLayer global tier (trimmed dHash + mirror)":
        lambda data: fingerprint_bytes(data, local=False),
    "MediaLayer complete fingerprint (both tiers)": lambda data: fingerprint_bytes(data),
    "MediaLayer query fingerprint (main view; the others only if needed)":
        lambda data: fingerprint_bytes(data, query=True),
    "imagehash.dhash (draft decode)": imagehash_dhash,
    "pdqhash (PDQ)": pdq,
}


def rate(method: Callable[[bytes], object], files: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for data in files:
            method(data)
        best = min(best, time.perf_counter() - t0)
    return len(files) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--files", choices=["catalog", "all"], default="all")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    paths = sorted((args.corpus / "catalog").iterdir())
    if args.files == "all":
        paths += sorted((args.corpus / "queries").iterdir())
    paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
    files = [p.read_bytes() for p in paths]  # bytes in memory: the bench times decode + hash
    print(f"{len(files)} files from {args.corpus} ({args.files}), one core, "
          f"best of {args.repeat}; OMP/BLAS threads: {os.environ.get('OMP_NUM_THREADS', '-')}")
    rates = {name: rate(m, files, args.repeat) for name, m in METHODS.items()}
    pdq_rate = rates["pdqhash (PDQ)"]
    dhash_rate = rates["imagehash.dhash (draft decode)"]
    print("| method | images/s per core | ms/image | vs imagehash.dhash | vs PDQ |")
    print("|---|---|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.0f} | {1000 / r:.2f} | {r / dhash_rate:.2f}x | "
              f"{r / pdq_rate:.2f}x |")
    blob = encode(fingerprint_bytes(files[0]))
    print(f"\nstored fingerprint: {len(blob)} bytes per item (8-byte code + mirror code + "
          f"keypoints); the global tier's in-memory index holds ~34 bytes per item")


if __name__ == "__main__":
    main()

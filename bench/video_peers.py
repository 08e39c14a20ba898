"""Video peers, run as the corpus README describes them (brute-force search, no index).

- vpdq (pip `vpdq`, Meta; `make bench-video-peers` installs it with the Debian packages it
  builds against): one PDQ hash per second; a query frame matches if some catalog frame is
  within Hamming 31 and its quality is >= 50; score = the matched share of query frames.
- dHash 1 fps: a 64-bit dHash of one frame per second (decoded with PyAV); score = 1 - the
  mean Hamming distance at the best temporal offset / 64.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from medialayer.kinds.image import dhash  # noqa: E402

from evaluation import Answer  # noqa: E402


class Cost(NamedTuple):
    cpu: float  # CPU seconds to fingerprint the catalog
    size: int  # bytes of the catalog's fingerprints


def _dhash_1fps(path: Path) -> np.ndarray:
    """One 64-bit dHash per second of video, from the first frame of each second."""
    codes: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= len(codes):
                codes.append(dhash(frame.to_ndarray(format="gray")))
    return np.array(codes, np.uint64)


def _dhash_score(query: np.ndarray, ref: np.ndarray) -> float:
    """1 - mean distance / 64 at the best offset with at least half the shorter one overlapping."""
    best = 0.0
    short = min(len(query), len(ref))
    for shift in range(-len(query) + 1, len(ref)):
        q0, r0 = max(0, -shift), max(0, shift)
        n = min(len(query) - q0, len(ref) - r0)
        if n <= 0 or n < short / 2:
            continue
        d = np.bitwise_count(query[q0 : q0 + n] ^ ref[r0 : r0 + n]).mean()
        best = max(best, 1.0 - float(d) / 64)
    return best


def _vpdq_hashes(path: Path) -> np.ndarray:
    """(n, 4) uint64 PDQ hashes of the frames of quality >= 50, one frame per second."""
    import vpdq

    feats = [f for f in vpdq.computeHash(str(path), seconds_per_hash=1) if f.quality >= 50]
    return np.array([[int(f.hex[i : i + 16], 16) for i in range(0, 64, 16)] for f in feats],
                    np.uint64).reshape(-1, 4)


def _vpdq_score(query: np.ndarray, ref: np.ndarray) -> float:
    if not len(query) or not len(ref):
        return 0.0
    d = np.bitwise_count(query[:, None, :] ^ ref[None, :, :]).sum(axis=2)
    return float((d.min(axis=1) <= 31).mean())


def _vpdq_available() -> bool:
    try:
        import vpdq  # noqa: F401
    except ImportError:
        print("vpdq is not installed (make bench-video-peers): skipped", file=sys.stderr)
        return False
    return True


Peer = tuple[Callable[[Path], np.ndarray], Callable[[np.ndarray, np.ndarray], float],
             Callable[[], bool]]
PEERS: dict[str, Peer] = {
    "vpdq": (_vpdq_hashes, _vpdq_score, _vpdq_available),
    "dHash 1 fps": (_dhash_1fps, _dhash_score, lambda: True),
}


def run_peer(name: str, catalog: dict[str, Path], root: Path, queries: list[str]
             ) -> tuple[dict[str, Answer], Cost] | None:
    """Answers (top-1 over the whole catalog) and the catalog's fingerprinting cost."""
    hasher, score, available = PEERS[name]
    if not available():
        return None
    t = time.process_time()
    refs: dict[str, Any] = {cid: hasher(path) for cid, path in catalog.items()}
    cpu = time.process_time() - t
    answers: dict[str, Answer] = {}
    t = time.perf_counter()
    for query in queries:
        codes = hasher(root / query)
        scored = [(score(codes, ref), cid) for cid, ref in refs.items()]
        best, cid = max(scored) if scored else (0.0, "")
        answers[query] = Answer(cid if best > 0 else "", best)
    print(f"{name}: searched {len(queries)} in {time.perf_counter() - t:.1f} s (query hashing "
          "included)", file=sys.stderr)
    return answers, Cost(cpu, sum(int(r.nbytes) for r in refs.values()))

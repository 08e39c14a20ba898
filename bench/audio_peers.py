"""The audio peers, run as the corpus README describes: Chromaprint and audfprint.

- Chromaprint: Debian's `fpcalc -raw -length 0` (`make bench-audio-deps` installs it); a query
  is scored against every catalog print by the bit error rate at the best offset (brute force,
  at least half of the shorter print overlapping); score = 1 - BER.
- audfprint: pip `audfprint2` with its command-line defaults (density 20, 4 query shifts);
  score = the count of time-aligned matching hashes.

Each peer reports (answers, catalog seconds per CPU second, stored bytes, search seconds).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PeerRun:
    answers: dict[str, tuple[str, float]]  # query path -> (catalog id or "", score)
    speed: float  # catalog seconds fingerprinted per CPU second
    stored_bytes: int
    search_seconds: float


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fpcalc(path: Path) -> np.ndarray:
    """The raw print; fpcalc 1.5 exits 3 after "Error decoding audio frame (End of file)" on
    complete files, so its output decides, not its exit status."""
    out = subprocess.run(["fpcalc", "-raw", "-length", "0", str(path)],
                         capture_output=True, text=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("FINGERPRINT=")), "FINGERPRINT=")
    values = line.split("=", 1)[1]
    return np.array([int(v) for v in values.split(",") if v], np.int64).astype(np.uint32)


class _ChromaprintCatalog:
    """All catalog prints end to end, each followed by a gap, for one sliding pass a query."""

    def __init__(self, prints: list[tuple[str, np.ndarray]], gap: int) -> None:
        self.ids = [i for i, _ in prints]
        self.lengths = np.array([len(p) for _, p in prints])
        self.starts = np.concatenate([[0], np.cumsum(self.lengths + gap)[:-1]]) + gap
        total = int(self.starts[-1] + self.lengths[-1] + gap)
        self.codes = np.zeros(total, np.uint32)
        self.valid = np.zeros(total, bool)
        for n, (_, p) in enumerate(prints):
            s = self.starts[n]
            self.codes[s : s + len(p)] = p
            self.valid[s : s + len(p)] = True

    def best(self, query: np.ndarray) -> tuple[str, float]:
        """Slide the query over the catalog; per item, the lowest BER with enough overlap."""
        m = len(query)
        positions = len(self.codes) - m + 1
        errors = np.zeros(positions, np.int64)
        overlap = np.zeros(positions, np.int64)
        for i in range(m):
            window = slice(i, i + positions)
            errors += np.bitwise_count(self.codes[window] ^ query[i]) * self.valid[window]
            overlap += self.valid[window]
        # the gaps are as long as the query, so each item's offsets see only that item
        best_id, best_score = "", 0.0
        for n, item in enumerate(self.ids):
            lo = max(0, self.starts[n] - m + 1)
            hi = min(positions, self.starts[n] + self.lengths[n])
            need = max(1, min(m, self.lengths[n]) // 2)
            ok = overlap[lo:hi] >= need
            if not ok.any():
                continue
            ber = errors[lo:hi][ok] / (32.0 * overlap[lo:hi][ok])
            score = 1.0 - float(ber.min())
            if score > best_score:
                best_id, best_score = item, score
        return best_id, best_score


def chromaprint(catalog: list[tuple[str, Path, float]], queries: list[Path]) -> PeerRun:
    cpu = _child_cpu()
    prints = [(clip, fpcalc(path)) for clip, path, _ in catalog]
    speed = sum(d for _, _, d in catalog) / max(_child_cpu() - cpu, 1e-9)
    query_prints = {q: fpcalc(q) for q in queries}
    index = _ChromaprintCatalog(prints, gap=max(len(p) for p in query_prints.values()))
    t0 = time.process_time()
    answers = {str(q): index.best(p) for q, p in query_prints.items()}
    search = (time.process_time() - t0) / max(1, len(queries))
    return PeerRun(answers, speed, sum(4 * len(p) for _, p in prints), search)


def audfprint(catalog: list[tuple[str, Path, float]], queries: list[Path]) -> PeerRun:
    from audfprint2 import cli
    from audfprint2.core import hash_table, matcher

    def analyzer(is_match: bool) -> object:
        return cli.setup_analyzer(density=20.0, is_match=is_match, pks_per_frame=5, fanout=3,
                                  freq_sd=30.0, shifts=0, samplerate=11025,
                                  continue_on_error=True, ffmpeg_path=None)

    table = hash_table.HashTable(hashbits=20, depth=100, maxtime=16384)
    indexer = analyzer(False)
    cpu = time.process_time() + _child_cpu()
    stored = 0
    for clip, path, _ in catalog:
        hashes = indexer.wavfile2hashes(str(path))
        stored += len(hashes)
        table.store(clip, [(int(t), int(h)) for t, h in hashes.tolist()])
    speed = sum(d for _, _, d in catalog) / max(time.process_time() + _child_cpu() - cpu, 1e-9)
    match = cli.setup_matcher(match_win=2, search_depth=100, min_count=5, max_matches=1,
                              exact_count=False, find_time_range=False, time_quantile=0.05,
                              sortbytime=False, illustrate=False, illustrate_hpf=False)
    searcher = analyzer(True)
    answers: dict[str, tuple[str, float]] = {}
    t0 = time.process_time()
    for q in queries:
        found, _, _ = matcher.Matcher.match_file(match, searcher, table, str(q))
        answers[str(q)] = ((table.names[int(found[0][0])], float(found[0][1]))
                           if len(found) else ("", 0.0))
    search = (time.process_time() - t0) / max(1, len(queries))
    return PeerRun(answers, speed, 4 * stored, search)


PEERS: dict[str, Callable[[list[tuple[str, Path, float]], list[Path]], PeerRun]] = {
    "Chromaprint": chromaprint,
    "audfprint": audfprint,
}


def available() -> dict[str, Callable[[list[tuple[str, Path, float]], list[Path]], PeerRun]]:
    """The peers this machine can run (fpcalc comes from a Debian package)."""
    have_fpcalc = any(os.access(Path(d) / "fpcalc", os.X_OK)
                      for d in os.environ.get("PATH", "").split(os.pathsep))
    return {n: f for n, f in PEERS.items() if n != "Chromaprint" or have_fpcalc}

"""HammingIndex must agree exactly with brute force, whatever path a query takes.

The index switches between bucket probing, a linear scan, offset tables and sorted band
values depending on size and radius, so each test pins those choices through the private
tuning knobs ("mih", "scan") as well as leaving them alone ("auto").
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from medialayer.index.hamming import HammingIndex

MODES = ("mih", "scan", "auto")
# (bits, bands): table path, sorted-values path (wide bands), uneven bands, tiny codes.
CONFIGS = [(64, 4), (64, 3), (64, 2), (64, 5), (64, 8), (40, 2), (12, 1), (12, 5)]


def make_index(bits: int = 64, bands: int = 4, mode: str = "auto", delta: int | None = None):
    idx = HammingIndex(bits=bits, bands=bands)
    if mode == "mih":
        idx._scan_frac = idx._knn_frac = float("inf")
    elif mode == "scan":
        idx._scan_frac = idx._knn_frac = 0.0
    if delta is not None:  # small deltas force frequent merges into the tables
        idx._delta_min = idx._delta_cap = delta
    if bits == 40:
        idx._table_max_bits = 20  # 20-bit offset tables: the wide-table path at small sizes
    return idx


def dists(model: dict[int, int], qs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.fromiter(model.keys(), dtype=np.int64, count=len(model))
    codes = np.fromiter(model.values(), dtype=np.uint64, count=len(model))
    d = np.full(len(model), 255, dtype=np.int64)
    for q in qs:
        d = np.minimum(d, np.bitwise_count(codes ^ np.uint64(q)).astype(np.int64))
    return keys, d


def ref_radius(model: dict[int, int], qs: list[int], r: int) -> list[tuple[int, int]]:
    keys, d = dists(model, qs)
    m = d <= r
    order = np.lexsort((keys[m], d[m]))
    return list(zip(keys[m][order].tolist(), d[m][order].tolist(), strict=True))


def ref_knn(model: dict[int, int], q: int, k: int, max_radius: int | None = None):
    return ref_radius(model, [q], 64 if max_radius is None else max_radius)[:k]


def clustered_codes(rng: np.random.Generator, n: int, bits: int, centres: int) -> np.ndarray:
    """Codes near a few centres (0-6 flipped bits), with exact duplicates: the worst case
    for bucket sizes and for ties."""
    base = rng.integers(0, 1 << bits, max(centres, 1), dtype=np.uint64, endpoint=False)
    codes = base[rng.integers(0, base.size, n)]
    for _ in range(6):
        flip = rng.random(n) < 0.5
        bit = rng.integers(0, bits, n).astype(np.uint64)
        codes = np.where(flip, codes ^ (np.uint64(1) << bit), codes)
    return codes


def check_all(idx: HammingIndex, model: dict[int, int], rng: np.random.Generator, bits: int):
    assert len(idx) == len(model)
    codes = list(model.values()) or [0]
    for _ in range(4):
        q = int(codes[rng.integers(len(codes))]) ^ int(rng.integers(0, 1 << min(bits, 12)))
        r = int(rng.choice([0, 1, 3, bits // 8, bits // 4, bits // 2, bits]))
        assert idx.radius(q, r) == ref_radius(model, [q], r)
        mirror = int(rng.integers(0, 1 << bits, dtype=np.uint64))
        assert idx.radius_many([q, mirror], r) == ref_radius(model, [q, mirror], r)
        k = int(rng.integers(0, 12))
        assert idx.knn(q, k) == ref_knn(model, q, k)
        assert idx.knn(q, k, max_radius=r) == ref_knn(model, q, k, r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(CONFIGS),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 600),
    centres=st.integers(1, 50),
    ops=st.lists(st.sampled_from(["add", "add_many", "remove", "compact", "check"]), max_size=8),
)
def test_matches_brute_force(config, mode, seed, n, centres, ops):
    bits, bands = config
    rng = np.random.default_rng(seed)
    idx = make_index(bits, bands, mode, delta=int(rng.choice([4, 64, 4096])))
    keys = rng.integers(-(2**62), 2**62, n)
    codes = clustered_codes(rng, n, bits, centres)
    idx.add_many(keys, codes)
    model = dict(zip(keys.tolist(), codes.tolist(), strict=True))
    check_all(idx, model, rng, bits)
    for op in ops:
        pool = list(model) or [1]
        if op == "add":  # a new key or a replacement, near an existing code
            for _ in range(int(rng.integers(1, 20))):
                key = int(rng.choice(pool)) if rng.random() < 0.5 else int(rng.integers(-50, 50))
                code = int(clustered_codes(rng, 1, bits, 1)[0])
                idx.add(key, code)
                model[key] = code
        elif op == "add_many":  # with repeats inside the batch: the last one wins
            m = int(rng.integers(0, 300))
            ks = rng.choice(np.array(pool + list(range(-40, 40)), dtype=np.int64), m)
            cs = clustered_codes(rng, m, bits, 3)
            idx.add_many(ks, cs)
            model.update(zip(ks.tolist(), cs.tolist(), strict=True))
        elif op == "remove":
            for key in rng.choice(pool, int(rng.integers(1, len(pool) + 1))).tolist():
                assert idx.remove(key) == (key in model)
                model.pop(key, None)
        elif op == "compact":
            idx.compact()
        else:
            check_all(idx, model, rng, bits)
    check_all(idx, model, rng, bits)
    for key in list(model)[:20]:
        assert key in idx


class IndexMachine(RuleBasedStateMachine):
    """Random interleavings of writes and queries, with merges and compactions forced often."""

    @initialize(config=st.sampled_from(CONFIGS), mode=st.sampled_from(MODES))
    def setup(self, config, mode):
        self.bits, bands = config
        self.idx = make_index(self.bits, bands, mode, delta=8)
        self.idx._dead_frac = 0.1
        self.model: dict[int, int] = {}
        self.rng = np.random.default_rng(0)

    codes = st.integers(0, 7).flatmap(
        lambda i: st.sets(st.integers(0, 63), max_size=3).map(
            lambda flips: (0x9E3779B97F4A7C15 * (i + 1)) % (1 << 64) ^ sum(1 << f for f in flips)
        )
    )

    def _code(self, code: int) -> int:
        return code % (1 << self.bits)

    @rule(key=st.integers(-5, 40), code=codes)
    def add(self, key, code):
        self.idx.add(key, self._code(code))
        self.model[key] = self._code(code)

    @rule(items=st.lists(st.tuples(st.integers(-5, 40), codes), max_size=30))
    def add_many(self, items):
        keys = np.array([k for k, _ in items], dtype=np.int64)
        codes = np.array([self._code(c) for _, c in items], dtype=np.uint64)
        self.idx.add_many(keys, codes)
        self.model.update(zip(keys.tolist(), codes.tolist(), strict=True))

    @rule(key=st.integers(-5, 40))
    def remove(self, key):
        assert self.idx.remove(key) == (key in self.model)
        self.model.pop(key, None)

    @rule()
    def compact(self):
        self.idx.compact()

    @rule(code=codes, r=st.integers(0, 64))
    def radius(self, code, r):
        q = self._code(code)
        assert self.idx.radius(q, r) == ref_radius(self.model, [q], min(r, self.bits))

    @rule(code=codes, k=st.integers(0, 10), max_radius=st.none() | st.integers(0, 20))
    def knn(self, code, k, max_radius):
        q = self._code(code)
        assert self.idx.knn(q, k, max_radius) == ref_knn(self.model, q, k, max_radius)

    @rule(a=codes, b=codes, r=st.integers(0, 20))
    def radius_many(self, a, b, r):
        qs = [self._code(a), self._code(b)]
        assert self.idx.radius_many(qs, r) == ref_radius(self.model, qs, r)

    @invariant()
    def size_and_membership(self):
        if not hasattr(self, "idx"):
            return
        assert len(self.idx) == len(self.model)
        for key in range(-5, 41):
            assert (key in self.idx) == (key in self.model)


IndexMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestIndexMachine = IndexMachine.TestCase


# ---------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("mode", MODES)
def test_empty_index(mode):
    idx = make_index(mode=mode)
    assert len(idx) == 0
    assert idx.radius(123, 64) == []
    assert idx.knn(123, 5) == []
    assert idx.radius_many([1, 2], 8) == []
    assert idx.radius_many([], 8) == []
    assert 7 not in idx
    assert idx.remove(7) is False
    idx.compact()
    assert len(idx) == 0
    assert idx.nbytes() > 0


@pytest.mark.parametrize("mode", MODES)
def test_k_larger_than_size_returns_everything_sorted(mode):
    idx = make_index(mode=mode)
    idx.add_many(np.array([5, 3, 9]), np.array([0b111, 0b1, 0b1], dtype=np.uint64))
    assert idx.knn(0, 10) == [(3, 1), (9, 1), (5, 3)]
    assert idx.knn(0, 0) == []
    assert idx.knn(0, 10, max_radius=1) == [(3, 1), (9, 1)]
    assert idx.knn(0, 10, max_radius=0) == []


@pytest.mark.parametrize("mode", MODES)
def test_radius_zero_and_full(mode):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2**64, 500, dtype=np.uint64)
    codes[100:110] = codes[7]  # exact duplicates under different keys
    idx = make_index(mode=mode)
    idx.add_many(np.arange(500), codes)
    assert idx.radius(int(codes[7]), 0) == [(k, 0) for k in [7, *range(100, 110)]]
    everything = idx.radius(int(codes[0]), 64)
    assert len(everything) == 500
    assert everything == idx.radius(int(codes[0]), 1000)  # clamped to the code width
    assert everything[0] == (0, 0)


def test_remove_unknown_and_twice():
    idx = make_index()
    idx.add(1, 10)
    assert idx.remove(2) is False
    assert idx.remove(2**80) is False  # not even an int64
    assert idx.remove(1) is True
    assert idx.remove(1) is False
    assert "x" not in idx
    assert len(idx) == 0


@pytest.mark.parametrize("built", [False, True])
def test_replacing_a_code(built):
    idx = make_index()
    idx.add(1, 0)
    idx.add(2, 0)
    if built:
        idx.compact()  # key 1 now lives in the tables rather than in the delta
    idx.add(1, 2**64 - 1)
    assert len(idx) == 2
    assert idx.radius(0, 0) == [(2, 0)]
    assert idx.radius(2**64 - 1, 0) == [(1, 0)]
    idx.add_many(np.array([2, 1, 2]), np.array([5, 5, 4], dtype=np.uint64))
    assert idx.radius(4, 1) == [(2, 0), (1, 1)]
    assert len(idx) == 2


def test_removed_and_readded_keys():
    idx = make_index(delta=4)
    idx.add_many(np.arange(100), np.arange(100, dtype=np.uint64))
    for k in range(0, 100, 2):
        assert idx.remove(k)
    assert len(idx) == 50
    idx.add(4, 3)
    assert idx.radius(3, 0) == [(3, 0), (4, 0)]
    assert idx.knn(2**63, 3) == ref_knn({k: k for k in range(1, 100, 2)} | {4: 3}, 2**63, 3)


def test_many_removals_compact_automatically():
    idx = make_index()
    idx.add_many(np.arange(10_000), np.arange(10_000, dtype=np.uint64))
    before = idx.nbytes()
    for k in range(4000):
        idx.remove(k)
    assert idx.nbytes() < before  # rebuilt without the tombstones
    assert len(idx) == 6000
    assert idx.radius(5000, 0) == [(5000, 0)]
    assert idx.radius(10, 0) == []


def test_input_validation():
    idx = make_index(bits=16, bands=2)
    with pytest.raises(ValueError):
        idx.add(1, 1 << 16)
    with pytest.raises(ValueError):
        idx.add(1, -1)
    with pytest.raises(ValueError):
        idx.add(2**63, 1)
    with pytest.raises(ValueError):
        idx.radius(1, -1)
    with pytest.raises(ValueError):
        idx.knn(1, -1)
    with pytest.raises(ValueError):
        idx.add_many(np.arange(3), np.arange(2, dtype=np.uint64))
    with pytest.raises(ValueError):
        idx.add_many(np.arange(2), np.array([1, 1 << 16]))
    with pytest.raises(ValueError):
        idx.add_many(np.arange(2), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        HammingIndex(bits=65)
    with pytest.raises(ValueError):
        HammingIndex(bits=8, bands=9)
    idx.add_many([2**63 - 1, -(2**63)], [0, 1])  # plain lists and the int64 extremes
    assert idx.knn(0, 2) == [(2**63 - 1, 0), (-(2**63), 1)]


def test_bulk_load_does_not_alias_caller_arrays():
    keys = np.arange(1000, dtype=np.int64)
    codes = np.arange(1000, dtype=np.uint64)
    idx = make_index()
    idx.add_many(keys, codes)
    keys[:] = -1
    codes[:] = 0
    assert idx.radius(999, 0) == [(999, 0)]


def test_realistic_size_uses_buckets_and_stays_small():
    """At a size where the defaults choose bucket probing, results still match a scan, and
    the arrays stay within the 40 bytes per item budget."""
    rng = np.random.default_rng(7)
    n = 400_000
    codes = rng.integers(0, 2**64, n, dtype=np.uint64)
    keys = rng.permutation(n).astype(np.int64) * 3
    idx = HammingIndex()
    idx.add_many(keys, codes)
    assert idx.nbytes() / n <= 40
    scan = make_index(mode="scan")
    scan.add_many(keys, codes)
    for i in rng.integers(0, n, 30):
        q = int(codes[i]) ^ int(rng.integers(0, 2**64, dtype=np.uint64)) & 0x8100_0420_0010_8001
        assert idx._mih_worthwhile(8)
        assert idx.radius(q, 8) == scan.radius(q, 8)
        assert idx.radius_many([q, ~q & (2**64 - 1)], 10) == scan.radius_many(
            [q, ~q & (2**64 - 1)], 10
        )
        assert idx.knn(q, 5) == scan.knn(q, 5)

"""PostgreSQL serving the global tier itself, side by side with the in-memory tier.

    .venv/bin/python bench/pg_global.py --items 1000000 [--items 10000000] [--queries 2000]
        [--scan-queries 200] [--clients 4] [--even] [--keep]
        [--dsn postgresql://postgres@127.0.0.1:5432/test] [--schema pgtier_bench]

Issue 15 item 3, design (a): could the database answer "which of this tenant's images have a
64-bit code within r bits of the query's (or its mirror's)?" from the code columns, so that
index hosts need nothing but PostgreSQL and its replicas? For each `--items` N the script loads
N synthetic codes (the `bench/scale.py` ones: random 64-bit codes, 10 tenants) into a table of
its own (schema `--schema`, dropped at the end unless `--keep`), LIST-partitioned by tenant
(a search is always one tenant's), with the code's four 16-bit substrings as smallint columns,
and measures two ways of searching it:

* **mih**: multi-index hashing. A btree on each substring, `INCLUDE (code, seq, tenant)` so a
  probe is an index-only scan (without the tenant, its clause sends every candidate to the
  heap). By the generalised pigeonhole principle an item within r bits differs in
  at most t_b bits in some band b when sum(t_b + 1) = r + 1; the probe radii are the in-memory
  tier's own (`HammingIndex._alloc`, 2,1,1,1 for r = 8; `--even` uses the textbook floor(r/4)
  in every band). Each band's substring variants go in one `= ANY(...)`, each branch keeps the
  rows within r bits (`bit_count((code # q)::bit(64))`: PostgreSQL 14+ has `bit_count` on
  bit and bytea, not on bigint), and a UNION merges the branches.
* **scan**: the tenant's partition read whole (parallel sequential scan) with the same
  `bit_count` filter: no index at all.

And, in the same run on the same codes and queries, **memory**: the in-memory tier
(`HammingIndex` with `TenantMap`, bands 4 below 5M items and 3 from there, as deployed) in
this process.

Queries: a stored code with 0-8 random bits flipped plus that item's mirror code, searched in
the item's own tenant (so the source item is among the answers). Each client first runs
`--warm` other queries and then every timed query once untimed (the scan: 10 queries), so the
timed pass reads warm caches, as a serving index would. Recall is against the exact
answer (numpy over the tenant's codes). Latency is wall time per query at the client, with 1
client and with C clients at once (each on a connection of its own; for `memory` the C clients
are threads of this one process); throughput is queries completed per second of the C-client
run. "CPU" is, per query of the 1-client run, the client thread's CPU time plus the backend
process's (/proc: the server runs on this machine; the scan's parallel workers not included).
Session settings: `jit = off`, generic plans (a custom plan of the MIH query costs about as much
planning as executing), `--parallel` workers per gather, `work_mem = 64MB`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

try:
    from medialayer.index.hamming import HammingIndex, _masks
    from medialayer.index.tenants import TenantMap
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from medialayer.index.hamming import HammingIndex, _masks
    from medialayer.index.tenants import TenantMap

TENANTS = 10
BANDS = 4  # 16-bit substrings: smallint columns
COPY_BATCH = 1_000_000
Query = tuple[int, int, int]  # code with bits flipped, the item's mirror code, tenant
Search = Callable[[Query], list[int]]


def make_codes(items: int) -> np.ndarray:
    """bench/scale.py's codes: (code, mirror) per item, item i has seq i + 1."""
    return np.random.default_rng(7).integers(0, 2**64, size=(items, 2), dtype=np.uint64)


def make_queries(codes: np.ndarray, count: int) -> list[Query]:
    rng = np.random.default_rng(21)
    out = []
    for i in rng.integers(0, len(codes), count).tolist():
        q = int(codes[i, 0])
        for bit in rng.choice(64, int(rng.integers(0, 9)), replace=False).tolist():
            q ^= 1 << bit
        out.append((q, int(codes[i, 1]), (i + 1) % TENANTS))
    return out


def exact(codes: np.ndarray, queries: Sequence[Query], r: int) -> list[set[int]]:
    """Each query's answer by brute force over its tenant's codes: the recall's reference."""
    seqs = np.arange(1, len(codes) + 1)
    own = [seqs[(t - 1) % TENANTS::TENANTS] for t in range(TENANTS)]  # seq % TENANTS == t
    own_codes = [codes[s - 1, 0] for s in own]
    out = []
    for q0, q1, t in queries:
        d = np.minimum(np.bitwise_count(own_codes[t] ^ np.uint64(q0)),
                       np.bitwise_count(own_codes[t] ^ np.uint64(q1)))
        out.append(set(own[t][d <= r].tolist()))
    return out


# ---------------------------------------------------------------- PostgreSQL


def signed(code: int) -> int:
    return code - (1 << 64) if code >= 1 << 63 else code


def copy_rows(codes: np.ndarray, start: int) -> bytes:
    """Rows [start, start + len(codes)) in COPY's binary format, built with numpy (a Python
    loop over 10M rows would take longer than the server's load)."""
    fields = [("seq", ">i8"), ("tenant", ">i2"), ("code", ">i8")]
    fields += [(f"s{b}", ">i2") for b in range(BANDS)]
    dtype = [("n", ">i2")]
    for name, kind in fields:
        dtype += [(f"len_{name}", ">i4"), (name, kind)]
    rows = np.zeros(len(codes), dtype=dtype)
    rows["n"] = len(fields)
    for name, kind in fields:
        rows[f"len_{name}"] = np.dtype(kind).itemsize
    seq = np.arange(start + 1, start + 1 + len(codes), dtype=np.int64)
    rows["seq"] = seq
    rows["tenant"] = seq % TENANTS
    rows["code"] = codes.view(np.int64)
    parts = codes.view(np.int16).reshape(-1, BANDS)  # little-endian: s0 is bits 0-15
    for b in range(BANDS):
        rows[f"s{b}"] = parts[:, b]
    return rows.tobytes()


def load(conn: psycopg.Connection[Any], schema: str, codes: np.ndarray) -> dict[str, float]:
    t0 = time.perf_counter()
    conn.execute(f"drop schema if exists {schema} cascade")
    conn.execute(f"create schema {schema}")
    conn.execute(f"create table {schema}.codes (seq bigint not null, tenant smallint not null, "
                 "code bigint not null, s0 smallint not null, s1 smallint not null, "
                 "s2 smallint not null, s3 smallint not null) partition by list (tenant)")
    for t in range(TENANTS):
        conn.execute(f"create table {schema}.codes_t{t} partition of {schema}.codes "
                     f"for values in ({t})")
    conn.commit()
    with conn.cursor().copy(f"copy {schema}.codes from stdin (format binary)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
        for start in range(0, len(codes), COPY_BATCH):
            copy.write(copy_rows(codes[start:start + COPY_BATCH], start))
        copy.write(b"\xff\xff")
    conn.commit()
    t1 = time.perf_counter()
    conn.execute("set maintenance_work_mem = '1GB'")
    for b in range(BANDS):
        conn.execute(f"create index on {schema}.codes (s{b}) include (code, seq, tenant)")
    conn.commit()
    t2 = time.perf_counter()
    conn.autocommit = True
    conn.execute(f"vacuum (analyze) {schema}.codes")  # the visibility map: index-only scans
    conn.autocommit = False
    t3 = time.perf_counter()
    size = conn.execute(
        "select coalesce(sum(pg_table_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0) "
        "from pg_partition_tree(%s::regclass) where isleaf", (f"{schema}.codes",)).fetchone()
    assert size is not None
    return {"copy_s": t1 - t0, "index_s": t2 - t1, "vacuum_s": t3 - t2,
            "table_mb": int(size[0]) / 2**20, "index_mb": int(size[1]) / 2**20}


def probe_radii(r: int, even: bool) -> list[int]:
    if even:
        return [r // BANDS] * BANDS
    return HammingIndex(bits=64, bands=BANDS)._alloc(r)[0]


def band_masks(r: int, even: bool) -> list[np.ndarray]:
    return [_masks(16, t).astype(np.uint16) for t in probe_radii(r, even)]


MIH_SQL = " union ".join(
    f"(select seq, least(bit_count((code # %(q0)s)::bit(64)), "
    f"bit_count((code # %(q1)s)::bit(64))) d from {{schema}}.codes "
    f"where tenant = %(t)s and s{b} = any(%(a{b})s::smallint[]) and "
    f"least(bit_count((code # %(q0)s)::bit(64)), bit_count((code # %(q1)s)::bit(64))) <= %(r)s)"
    for b in range(BANDS))

SCAN_SQL = ("select seq, d from (select seq, least(bit_count((code # %(q0)s)::bit(64)), "
            "bit_count((code # %(q1)s)::bit(64))) d from {schema}.codes where tenant = %(t)s) x "
            "where d <= %(r)s")


def mih_params(query: Query, r: int, masks: list[np.ndarray]) -> dict[str, Any]:
    qs = np.array(query[:2], dtype=np.uint64)
    params: dict[str, Any] = {"q0": signed(query[0]), "q1": signed(query[1]), "t": query[2],
                              "r": r}
    for b in range(BANDS):
        values = (qs >> np.uint64(16 * b)).astype(np.uint16)
        variants = np.unique((values[:, None] ^ masks[b][None, :]).ravel())
        params[f"a{b}"] = variants.view(np.int16).tolist()
    return params


def pg_search(dsn: str, schema: str, how: str, r: int, even: bool,
              settings: dict[str, str]) -> Callable[[], tuple[Search, Callable[[], int]]]:
    """A factory of per-client searches, each on a connection of its own (prepared statements
    from the first query on), with the backend's pid for its CPU time."""
    masks = band_masks(r, even)
    sql = (MIH_SQL if how == "mih" else SCAN_SQL).format(schema=schema)

    def connect() -> tuple[Search, Callable[[], int]]:
        conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
        for name, value in settings.items():
            conn.execute(f"set {name} = '{value}'")
        pid = conn.info.backend_pid

        def search(query: Query) -> list[int]:
            params = (mih_params(query, r, masks) if how == "mih" else
                      {"q0": signed(query[0]), "q1": signed(query[1]), "t": query[2], "r": r})
            return [seq for seq, _ in conn.execute(sql, params).fetchall()]

        return search, lambda: pid

    return connect


def proc_cpu(pid: int) -> float:
    """User + system seconds of a process on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- in memory


def memory_search(codes: np.ndarray, r: int) -> tuple[Search, dict[str, float]]:
    n = len(codes)
    index = HammingIndex(bits=64, bands=4 if n < 5_000_000 else 3)
    tenants = TenantMap()
    keys = np.arange(1, n + 1, dtype=np.int64)
    t0 = time.perf_counter()
    index.add_many(keys, codes[:, 0])
    for t in range(TENANTS):
        tenants.set_many(keys[keys % TENANTS == t], f"t{t}")
    built = time.perf_counter() - t0

    def search(query: Query) -> list[int]:
        hits = index.radius_many([query[0], query[1]], r)
        found = np.fromiter((k for k, _ in hits), np.int64, len(hits))
        mine: list[int] = found[tenants.mask(found, f"t{query[2]}")].tolist()
        return mine

    return search, {"build_s": built,
                    "index_mb": (index.nbytes() + tenants.nbytes()) / 2**20}


# ---------------------------------------------------------------- measuring


def run_clients(connect: Callable[[], tuple[Search, Callable[[], int]]], warm: Sequence[Query],
                queries: Sequence[Query], clients: int
                ) -> tuple[np.ndarray, list[list[int]], float, float, float]:
    """Per-query wall times (s), answers in query order, queries per second, and per query the
    clients' thread CPU and the backends' CPU seconds (clients that are threads of this
    process report backend pid 0: nothing to read)."""
    sessions = [connect() for _ in range(clients)]
    for search, _ in sessions:
        for query in warm:  # plans, first touches: not counted
            search(query)
    walls = np.zeros(len(queries))
    cpus = np.zeros(len(queries))
    answers: list[list[int]] = [[] for _ in queries]
    cpu0 = [proc_cpu(pid()) if pid() else 0.0 for _, pid in sessions]

    def work(c: int) -> None:
        search = sessions[c][0]
        for i in range(c, len(queries), clients):
            t0, c0 = time.perf_counter(), time.thread_time()
            answers[i] = search(queries[i])
            walls[i] = time.perf_counter() - t0
            cpus[i] = time.thread_time() - c0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    server = sum(proc_cpu(pid()) - c0 if pid() else 0.0
                 for (_, pid), c0 in zip(sessions, cpu0, strict=True))
    return walls, answers, len(queries) / elapsed, float(cpus.mean()), server / len(queries)


def recall(answers: list[list[int]], truth: list[set[int]]) -> tuple[float, int]:
    """Share of the exact answers found, and answers outside r (must be 0)."""
    found = sum(len(truth[i] & set(a)) for i, a in enumerate(answers))
    wrong = sum(len(set(a) - truth[i]) for i, a in enumerate(answers))
    return found / max(1, sum(len(t) for t in truth)), wrong


def measure(connect: Callable[[], tuple[Search, Callable[[], int]]], warm: Sequence[Query],
            queries: Sequence[Query], truth: list[set[int]], clients: int
            ) -> list[dict[str, Any]]:
    """One client, then `clients` at once."""
    out = []
    for c in (1, clients):
        walls, answers, qps, client_cpu, server_cpu = run_clients(connect, warm, queries, c)
        got, wrong = recall(answers, truth)
        out.append({"walls": walls * 1000, "qps": qps, "client_cpu": client_cpu * 1000,
                    "server_cpu": server_cpu * 1000, "recall": got, "wrong": wrong})
    return out


def pct(run: dict[str, Any]) -> str:
    return f"{np.percentile(run['walls'], 50):.2f} / {np.percentile(run['walls'], 99):.2f}"


def table_row(items: int, method: str, setup: str, size: str, runs: list[dict[str, Any]],
              clients: int) -> str:
    one, many = runs
    return (f"| {items:,} | {method} | {setup} | {size} | {pct(one)} | "
            f"{one['client_cpu']:.2f} + {one['server_cpu']:.2f} | {pct(many)} | "
            f"{one['qps']:,.0f} / {many['qps']:,.0f} ({clients}) | {one['recall']:.4f} | "
            f"{one['wrong'] + many['wrong']} | {len(one['walls'])} |")


def run(args: argparse.Namespace, items: int) -> None:
    codes = make_codes(items)
    every = make_queries(codes, args.queries + args.warm)
    warm, queries = every[:args.warm], every[args.warm:]
    truth = exact(codes, queries, args.radius)
    clients = args.clients
    memory, built = memory_search(codes, args.radius)
    runs = measure(lambda: (memory, lambda: 0), warm + queries, queries, truth, clients)
    print(table_row(items, "in-memory tier (HammingIndex + TenantMap, in-process)",
                    f"build {built['build_s']:.1f} s", f"{built['index_mb']:,.0f} MB",
                    runs, clients), flush=True)
    with psycopg.connect(args.dsn) as conn:
        loaded = load(conn, args.schema, np.ascontiguousarray(codes[:, 0]))
    print(f"<!-- {items:,}: COPY {loaded['copy_s']:.1f} s, indexes {loaded['index_s']:.1f} s, "
          f"vacuum analyze {loaded['vacuum_s']:.1f} s; table {loaded['table_mb']:,.0f} MB, "
          f"indexes {loaded['index_mb']:,.0f} MB -->", flush=True)
    # Generic plans: a custom plan of the MIH query (four arrays of constants) costs about as
    # much planning as executing.
    settings = {"jit": "off", "max_parallel_workers_per_gather": str(args.parallel),
                "work_mem": "64MB", "plan_cache_mode": "force_generic_plan"}
    load_s = f"{loaded['copy_s'] + loaded['index_s'] + loaded['vacuum_s']:.0f} s"
    for even in ([False, True] if args.even else [False]):
        connect = pg_search(args.dsn, args.schema, "mih", args.radius, even, settings)
        name = "PostgreSQL MIH, " + ("floor(r/4) in every band" if even else
                                     f"probe radii {probe_radii(args.radius, False)}")
        runs = measure(connect, warm + queries, queries, truth, clients)
        print(table_row(items, name, f"load {load_s}",
                        f"{loaded['table_mb']:,.0f} + {loaded['index_mb']:,.0f} MB", runs,
                        clients), flush=True)
    scan_n = min(args.scan_queries, len(queries))
    connect = pg_search(args.dsn, args.schema, "scan", args.radius, False, settings)
    runs = measure(connect, warm[:10], queries[:scan_n], truth[:scan_n], clients)
    print(table_row(items, f"PostgreSQL bit_count scan of the tenant's partition "
                    f"({args.parallel} parallel workers)", f"COPY {loaded['copy_s']:.0f} s",
                    f"{loaded['table_mb']:,.0f} MB", runs, clients), flush=True)
    if not args.keep:
        with psycopg.connect(args.dsn) as conn:
            conn.execute(f"drop schema {args.schema} cascade")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, action="append")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--scan-queries", type=int, default=200)
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=2, help="max_parallel_workers_per_gather")
    ap.add_argument("--even", action="store_true", help="also the textbook floor(r/4) probes")
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--schema", default="pgtier_bench")
    ap.add_argument("--keep", action="store_true", help="leave the table in place")
    args = ap.parse_args()
    print("| items | method | set-up | size on disk / in memory | 1 client p50 / p99 ms "
          "| CPU ms/query, client + server | C clients p50 / p99 ms | queries/s 1 / C (C) | recall "
          "| outside r | queries |")
    print("| --- " * 11 + "|")
    for items in args.items or [1_000_000]:
        run(args, items)


if __name__ == "__main__":
    main()

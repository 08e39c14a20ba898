"""Index snapshots: a Hamming index over its mapped state answers as a fresh build does; a
registry over a snapshot and the change feed since sees rows added and deleted after it (on
SQLite and PostgreSQL); a corrupt, mismatched or stale snapshot is ignored; two processes
map the same files and share their pages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pg_fixtures import needs_postgres

from medialayer.catalog.store import NewMedia, SqlCatalogStore
from medialayer.index import local
from medialayer.index.hamming import HammingIndex
from medialayer.index.local import LocalFeatureIndex
from medialayer.index.registry import IndexRegistry
from medialayer.index.snapshot import IndexState, Position, Snapshots
from medialayer.kinds.image import Features, ImageFingerprint
from medialayer.kinds.image_search import ImageIndex, ImageKind

pytest_plugins = ["pg_fixtures"]

KIND = ImageKind()
CATALOG = "test-catalog"
DAY = 86400.0


def _codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random codes with clusters of near-duplicates (a few bits apart), as catalogs have."""
    codes = rng.integers(0, 2**64, n, dtype=np.uint64)
    copies = rng.integers(0, n, n // 4)
    flips = np.uint64(1) << rng.integers(0, 64, n // 4).astype(np.uint64)
    codes[rng.integers(0, n, n // 4)] = codes[copies] ^ flips
    return codes


def _answers(index: HammingIndex, queries: Sequence[int]) -> list[object]:
    return ([index.radius(q, r) for q in queries for r in (0, 3, 8, 14)]
            + [index.knn(q, 5) for q in queries])


def _mapped(state: IndexState, tmp_path: Path) -> IndexState:
    """`state` written as a snapshot and mapped back."""
    snapshots = Snapshots(tmp_path, CATALOG, DAY)
    snapshots.write("codes", 1, Position(0, 0), state)
    found = snapshots.read("codes", 1)
    assert found is not None
    return found.state


@pytest.mark.parametrize("bands", [4, 2])  # offset tables; sorted band values
def test_a_hamming_index_over_its_mapped_state_answers_as_a_fresh_build(tmp_path, bands) -> None:
    rng = np.random.default_rng(bands)
    keys = rng.permutation(20_000)[:6000].astype(np.int64)
    codes = _codes(rng, keys.size)
    built = HammingIndex(bands=bands)
    built.add_many(keys, codes)
    state = _mapped(built.state(), tmp_path)
    mapped = HammingIndex(bands=bands)
    mapped.load_state(state)
    queries = [int(c) ^ (1 << int(b)) for c, b in zip(codes[:40], rng.integers(0, 64, 40),
                                                         strict=True)]
    assert _answers(mapped, queries) == _answers(built, queries)
    assert not state.arrays["codes"].flags.writeable

    new_keys = np.arange(20_000, 26_000, dtype=np.int64)  # past the delta: onto `_over`
    new_codes = _codes(rng, new_keys.size)
    replaced = keys[:500]
    gone = keys[500:900].tolist() + new_keys[:300].tolist()
    items = dict(zip(keys.tolist(), codes.tolist(), strict=True))
    for index in (built, mapped):
        index.add_many(new_keys, new_codes)
        index.add_many(replaced, codes[-500:])
        index.add(int(keys[900]), int(codes[0]))
        for key in gone:
            assert index.remove(key)
    items.update(zip(new_keys.tolist(), new_codes.tolist(), strict=True))
    items.update(zip(replaced.tolist(), codes[-500:].tolist(), strict=True))
    items[int(keys[900])] = int(codes[0])
    for key in gone:
        del items[key]
    fresh = HammingIndex(bands=bands)
    fresh.add_many(list(items), np.array(list(items.values()), np.uint64))
    queries += [int(c) for c in new_codes[300:340]] + [int(c) for c in codes[-40:]]
    assert len(mapped) == len(fresh) and all(k in mapped for k in list(items)[::97])
    assert not any(k in mapped for k in gone)
    assert _answers(mapped, queries) == _answers(fresh, queries)

    again = HammingIndex(bands=bands)  # a snapshot written from one over a snapshot
    again.load_state(_mapped(mapped.state(), tmp_path / "again"))
    assert _answers(again, queries) == _answers(fresh, queries)


def _keypoint_votes(index: LocalFeatureIndex, queries: dict[int, np.ndarray]) -> list[object]:
    return [[(v.key, v.votes, v.pairs.tolist(), v.points.tolist())
             for v in index.vote(d, top=10, min_votes=1)] for d in queries.values()]


def test_a_keypoint_index_over_its_mapped_state_answers_as_a_fresh_build(tmp_path, monkeypatch
                                                                          ) -> None:
    """Mapped read-only, its big arrays are never written: adds go to the pending and delta
    levels, removals to the copy-on-write slot arrays, merges and compactions build new ones
    (a write into a read-only map would raise)."""
    monkeypatch.setattr(local, "MERGE_AT", 400)
    rng = np.random.default_rng(3)
    extent = 480.0
    items = {k: (rng.integers(0, 256, (40, 32), dtype=np.uint8),
                 rng.uniform(0, extent, (40, 2)).astype(np.float32)) for k in range(300)}
    built = LocalFeatureIndex(extent)
    for k, (d, p) in items.items():
        built.add(k, d, p)
    state = _mapped(built.state(), tmp_path)
    mapped = LocalFeatureIndex(extent)
    mapped.load_state(state)
    for name in ("entries", "starts", "points"):
        assert not state.arrays[name].flags.writeable
    queries = {k: d[::2] for k, (d, _) in list(items.items())[::30]}
    assert _keypoint_votes(mapped, queries) == _keypoint_votes(built, queries)

    for k in range(0, 120):  # a quarter of the slots dead: a compaction after the merge
        assert mapped.remove(k)
        del items[k]
    for k in range(300, 330):  # past MERGE_AT: a merge into main
        items[k] = (rng.integers(0, 256, (40, 32), dtype=np.uint8),
                    rng.uniform(0, extent, (40, 2)).astype(np.float32))
        mapped.add(k, *items[k])
    assert mapped._points is state.arrays["points"]  # still the mapped one, not a private copy
    merge = mapped.begin_merge()  # off the lock, as the registry runs it
    assert merge is not None
    merge.run()
    mapped.end_merge(merge)
    del items[150]  # replaced: its new slot is the last
    items[150] = (rng.integers(0, 256, (40, 32), dtype=np.uint8),
                  rng.uniform(0, extent, (40, 2)).astype(np.float32))
    mapped.add(150, *items[150])
    mapped.prepare()
    fresh = LocalFeatureIndex(extent)
    for k, (d, p) in items.items():
        fresh.add(k, d, p)
    queries = {k: d[::2] for k, (d, _) in list(items.items())[::15]}
    assert mapped._used < 330 and len(mapped) == len(fresh) == len(items)  # compacted
    assert _keypoint_votes(mapped, queries) == _keypoint_votes(fresh, queries)

    again = LocalFeatureIndex(extent)  # a snapshot written from one over a snapshot
    again.load_state(_mapped(mapped.state(), tmp_path / "again"))
    assert _keypoint_votes(again, queries) == _keypoint_votes(fresh, queries)
    with pytest.raises(ValueError, match="extent 480.0, not 640.0"):
        LocalFeatureIndex(640.0).load_state(state)


def _row(rng: np.random.Generator, tenant: str, points: int = 20) -> NewMedia:
    code, mirror = (int(c) for c in rng.integers(0, 2**63, 2, dtype=np.int64))
    features = Features(rng.uniform(0, 480, (points, 2)).astype(np.float32),
                        rng.integers(0, 256, (points, 32), dtype=np.uint8), (480, 360))
    return NewMedia(tenant=tenant, media_type="image", fingerprint_version=KIND.version,
                    fingerprint=KIND.encode(ImageFingerprint(code, features, (mirror,))))


def _registry(store: SqlCatalogStore, snapshots: Snapshots | None, bands: int | None = None
              ) -> IndexRegistry:
    def load(keys: Sequence[int], windows: object = None) -> dict[int, ImageFingerprint]:
        return {seq: KIND.decode(row.encoded)
                for seq, row in store.fingerprints_of(None, list(keys)).items()}

    return IndexRegistry(store, lambda name: KIND, lambda kind: load, bands,
                         snapshots=snapshots)


def _searches(registry: IndexRegistry, store: SqlCatalogStore, seqs: Sequence[int]
              ) -> list[object]:
    """Every tenant's answers to each row's fingerprint with two of its code's bits flipped,
    and to a crop of it: some of its keypoints, its code's bits all flipped (so only the
    keypoint tier finds it)."""
    answers: list[object] = []
    for seq, row in store.fingerprints_of(None, list(seqs)).items():
        stored = KIND.decode(row.encoded)
        near = ImageFingerprint(stored.code ^ 0b101, stored.features, stored.query_codes)
        crop = Features(stored.features.points[:14], stored.features.descriptors[:14],
                        stored.features.size)
        far = ImageFingerprint(stored.code ^ (2**64 - 1), crop,
                               tuple(c ^ (2**64 - 1) for c in stored.query_codes))
        for tenant in ("t0", "t1"):
            for query in (near, far):
                matches = registry.search("image", query, tenant, 5)
                answers.append((seq, tenant, [(m.key, round(m.score, 6)) for m in matches]))
    return answers


def _feed_replay_matches_a_fresh_build(url: str, tmp_path: Path) -> None:
    store = SqlCatalogStore(url)
    rng = np.random.default_rng(5)
    before = [r.seq for r in store.add_many([_row(rng, f"t{i % 2}") for i in range(60)])]
    snapshots = Snapshots(tmp_path / "snapshots", CATALOG, DAY)
    assert _registry(store, snapshots).write_snapshot("image") is not None
    for seq in before[:10]:
        store.delete(f"t{before.index(seq) % 2}", store.records([seq])[seq].id)
    after = [r.seq for r in store.add_many([_row(rng, f"t{i % 2}") for i in range(30)])]
    store.delete("t1", store.records([after[1]])[after[1]].id)

    mapped = _registry(store, snapshots)
    entry = mapped.wait("image")
    index = entry.index
    assert isinstance(index, ImageIndex) and index.codes._over is not None  # from the snapshot
    alive = before[10:] + after[:1] + after[2:]
    assert sorted(s for s in before + after if s in index) == alive
    assert all(s in index.local for s in alive)  # keypoints: mapped and replayed rows
    assert not mapped._loaders and not index.local._main.slots.flags.writeable  # none loaded
    fresh = _registry(store, None)
    answers = _searches(mapped, store, alive)
    assert answers == _searches(fresh, store, alive)
    crops = answers[1::2]  # each row's crop, asked by both tenants: found by its own
    assert all(found and found[0][0] == seq for seq, tenant, found in crops
               if tenant == f"t{(before + after).index(seq) % 2}"), crops

    later = store.add(_row(rng, "t0")).seq  # the feed goes on as usual after the start
    store.delete("t0", store.records([before[10]])[before[10]].id)
    mapped.sync("image")
    assert later in index and before[10] not in index
    for registry in (mapped, fresh):
        registry.close()
    store.engine.dispose()


def test_a_snapshot_and_the_feed_since_see_rows_added_and_deleted_after_it(tmp_path) -> None:
    _feed_replay_matches_a_fresh_build(f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path)


@needs_postgres
def test_a_snapshot_and_the_feed_since_on_postgres(pg_url: str, tmp_path) -> None:
    _feed_replay_matches_a_fresh_build(pg_url, tmp_path)


def _rewrite_manifest(folder: Path, **changes: object) -> None:
    path = folder / "image" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _rewrite_keypoint_meta(folder: Path, **changes: object) -> None:
    """The keypoint tier's parameters in the manifest changed, as a build with others
    would have written them."""
    path = folder / "image" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["meta"]["local"].update(changes)
    path.write_text(json.dumps(manifest))


def _rewrite_manifest_array(folder: Path, name: str) -> None:
    """`name` replaced by an array of another shape (its manifest entry to match)."""
    path = folder / "image" / "manifest.json"
    manifest = json.loads(path.read_text())
    spec = manifest["arrays"][name]
    data = folder / "image" / manifest["data"]
    wrong = np.zeros((spec["shape"][0], 64, 2), np.uint8)
    np.save(data / spec["file"], wrong)
    spec.update(shape=list(wrong.shape), crc32=zlib.crc32(wrong.data))
    path.write_text(json.dumps(manifest))


def test_a_corrupt_mismatched_or_stale_snapshot_is_ignored(tmp_path, caplog) -> None:
    store = SqlCatalogStore(f"sqlite:///{tmp_path / 'catalog.db'}")
    rng = np.random.default_rng(8)
    seqs = [r.seq for r in store.add_many([_row(rng, "t0") for _ in range(20)])]
    folder = tmp_path / "snapshots"
    data = _registry(store, Snapshots(folder, CATALOG, DAY)).write_snapshot("image")
    assert data is not None
    manifest = (folder / "image" / "manifest.json").read_text()

    def built_from_catalog(snapshots: Snapshots, bands: int | None = None) -> bool:
        registry = _registry(store, snapshots, bands)
        index = registry.wait("image").index
        registry.close()
        assert isinstance(index, ImageIndex) and sorted(s for s in seqs if s in index) == seqs
        return index.codes._over is None

    assert not built_from_catalog(Snapshots(folder, CATALOG, DAY))  # the good one is mapped
    caplog.set_level(logging.INFO)
    cases = {
        "kind_version": lambda: _rewrite_manifest(folder, kind_version=KIND.version - 1),
        "catalog is 'elsewhere'": lambda: _rewrite_manifest(folder, catalog="elsewhere"),
        "longer than deletions are kept": lambda: _rewrite_manifest(
            folder, written_at=time.time() - DAY - 60),
        "no row": lambda: _rewrite_manifest(folder, last_seq=seqs[-1] + 1000),
        "deletions log is behind": lambda: _rewrite_manifest(folder, last_deletion=5),
        f"format 1, not {local.STATE_FORMAT}": lambda: _rewrite_keypoint_meta(folder, format=1),
        f"key_bits 18, not {local.KEY_BITS}": lambda: _rewrite_keypoint_meta(folder, key_bits=18),
        f"tables 4, not {local.TABLES}": lambda: _rewrite_keypoint_meta(folder, tables=4),
        f"indexed 64, not {local.INDEXED}": lambda: _rewrite_keypoint_meta(folder, indexed=64),
        "extent 640": lambda: _rewrite_keypoint_meta(folder, extent=640.0),
        "'points' is uint8": lambda: _rewrite_manifest_array(folder, "local.points"),
        "checksum": lambda: _flip_a_byte(data / "codes.codes.npy"),
        "mmap length": lambda: _truncate(data / "codes.keys.npy"),
        "Expecting": lambda: (folder / "image" / "manifest.json").write_text("{"),
    }
    for why, spoil in cases.items():
        caplog.clear()
        spoil()
        assert built_from_catalog(Snapshots(folder, CATALOG, DAY)), why
        assert any("ignoring the image snapshot" in r.getMessage() and why in r.getMessage()
                   for r in caplog.records), why
        (folder / "image" / "manifest.json").write_text(manifest)
        _registry(store, Snapshots(folder, CATALOG, DAY)).write_snapshot("image")
        manifest = (folder / "image" / "manifest.json").read_text()
        data = folder / "image" / json.loads(manifest)["data"]
    caplog.clear()
    assert built_from_catalog(Snapshots(folder, CATALOG, DAY), bands=3)  # other bands
    assert any("'bands': 4" in r.getMessage() for r in caplog.records)
    store.engine.dispose()


def _flip_a_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF
    path.write_bytes(bytes(content))


def _truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[:-8])


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from medialayer.catalog.store import SqlCatalogStore
    from medialayer.index.registry import IndexRegistry
    from medialayer.index.snapshot import Snapshots
    from medialayer.kinds.image_search import ImageKind

    store_url, folder, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kind = ImageKind()
    registry = IndexRegistry(SqlCatalogStore(store_url), lambda name: kind,
                             lambda k: lambda keys, windows=None: {},
                             snapshots=Snapshots(folder, "test-catalog", 86400.0))
    index = registry.wait("image").index
    found = index.codes.radius(code, 8)
    local = index.local  # its mapped arrays read through, as votes over time would
    int(local._main.slots.sum()) + int(local._points.sum())
    print(json.dumps({"ready": found}), flush=True)
    sys.stdin.readline()  # both processes have mapped the files: read the pages shared
    usage = {}
    path = None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 6:
            path = fields[5] if fields[5].endswith(".npy") else None
        elif path and fields[0] in ("Rss:", "Pss:"):
            mine = usage.setdefault(path, {})  # over all of the file's mappings: the kernel
            mine[fields[0][:-1]] = mine.get(fields[0][:-1], 0) + int(fields[1])  # may split one
    print(json.dumps(usage), flush=True)
    sys.stdin.readline()  # until the other one has read its own
""")


def test_two_processes_map_the_same_files_and_share_their_pages(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    store = SqlCatalogStore(url)
    rng = np.random.default_rng(9)
    for _ in range(4):  # enough rows that the code and keypoint arrays span many pages
        store.add_many([_row(rng, "t0") for _ in range(2500)])
    folder = tmp_path / "snapshots"
    assert _registry(store, Snapshots(folder, CATALOG, DAY)).write_snapshot("image")
    code = KIND.decode(store.rows_of([7])[0].encoded).code
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, url, str(folder), str(code)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
    try:
        answers = [json.loads(c.stdout.readline())["ready"] for c in children if c.stdout]
        assert answers[0] == answers[1] and [7, 0] in answers[0]
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        usages = [json.loads(c.stdout.readline()) for c in children if c.stdout]
        for c in children:
            c.communicate("done\n", timeout=120)
    finally:
        for c in children:
            c.kill()
    assert usages[0].keys() == usages[1].keys()
    for name in ("codes.codes.npy", "local.entries.npy", "local.points.npy"):
        path = next(path for path in usages[0] if path.endswith(name))
        for usage in usages:  # the same file's pages, each resident in both: half each
            rss, pss = usage[path]["Rss"], usage[path]["Pss"]
            assert rss >= 64 and pss <= 0.6 * rss, (name, usage[path])
    store.engine.dispose()


def test_the_snapshot_command_writes_what_the_service_maps(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from medialayer.cli import app
    from medialayer.service import MediaLayer

    folder, data = tmp_path / "snapshots", tmp_path / "data"
    monkeypatch.setenv("MEDIALAYER_SNAPSHOT_DIR", "")  # the command sets it: restored after
    data.mkdir()
    store = SqlCatalogStore(f"sqlite:///{data / 'catalog.db'}")
    rng = np.random.default_rng(4)
    store.add_many([_row(rng, "default") for _ in range(30)])
    store.engine.dispose()
    result = CliRunner().invoke(app, ["snapshot", "--snapshot-dir", str(folder),
                                      "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert (folder / "image" / "manifest.json").is_file()
    ml = MediaLayer(data, snapshot_dir=folder)
    index = ml.indexes.wait("image").index
    assert isinstance(index, ImageIndex) and index.codes._over is not None and len(index) == 30
    ml.close()

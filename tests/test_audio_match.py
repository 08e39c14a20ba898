"""Audio landmarks found through edits, with the right offsets; unrelated audio is not."""

from __future__ import annotations

import io

import numpy as np
import pytest

from medialayer.index.postings import Hits
from medialayer.kinds.audio import calibration, match
from medialayer.kinds.audio.fingerprint import AudioFingerprint, fingerprint_stream
from medialayer.kinds.audio.index import AudioIndex
from medialayer.kinds.audio.match import AudioMatch, compare

from audio_synth import RATE, level, melody, mix, noise, speed, telephone, tempo, wav_bytes

CLIPS = 6
SECONDS = 14.0


def fingerprint(x: np.ndarray) -> AudioFingerprint:
    return fingerprint_stream(io.BytesIO(wav_bytes(x)))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [melody(SECONDS, seed) for seed in range(CLIPS)]


@pytest.fixture(scope="module")
def index(clips: list[np.ndarray]) -> AudioIndex:
    index = AudioIndex()
    for key, x in enumerate(clips):
        index.add(key, fingerprint(x))
    return index


def top(index: AudioIndex, x: np.ndarray) -> AudioMatch:
    found = index.search(fingerprint(x), top_k=3)
    assert found, "no match"
    return found[0]


def excerpt(x: np.ndarray, start: float, seconds: float) -> np.ndarray:
    return x[int(start * RATE): int((start + seconds) * RATE)]


def test_a_five_second_excerpt_is_found_where_it_sits(clips: list[np.ndarray],
                                                      index: AudioIndex) -> None:
    m = top(index, excerpt(clips[2], 6.3, 5.0))
    assert m.key == 2 and calibration.confidence(m.score) == "high"
    assert m.offset == pytest.approx(6.3, abs=0.1)
    s = m.segments[0]
    assert s.reference_start - s.query_start == pytest.approx(6.3, abs=0.1)
    assert 0.7 < m.covered <= 1.0


@pytest.mark.parametrize("factor", [0.97, 1.03])
def test_a_sped_up_or_slowed_down_copy_is_found_with_its_speed(
        clips: list[np.ndarray], index: AudioIndex, factor: float) -> None:
    m = top(index, excerpt(speed(clips[1], factor), 2.0, 8.0))
    assert m.key == 1 and calibration.confidence(m.score) == "high"
    assert (m.speed, m.pitch) == pytest.approx((factor, 1 / factor), abs=0.008)
    s = m.segments[0]  # query second t sits at reference second 2 * factor + factor * t
    assert s.reference_start == pytest.approx(factor * (2.0 + s.query_start), abs=0.15)


@pytest.mark.parametrize("factor", [1.0, 1.03])
def test_candidates_chosen_by_the_rarest_hashes_are_scored_on_all_their_hits(
        clips: list[np.ndarray], index: AudioIndex, monkeypatch: pytest.MonkeyPatch,
        factor: float) -> None:
    """Past SELECTED_HITS postings, only the rarest hashes choose the candidates; they are
    then aligned on every hit at their scale, as a lookup of every hash would align them."""
    query = excerpt(speed(clips[2], factor), 3.0, 6.0)
    whole = top(index, query)
    lookups: list[int] = []
    lookup = index.postings.lookup

    def counted(hashes: np.ndarray, *args: object) -> Hits:
        lookups.append(len(hashes))
        return lookup(hashes, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(index.postings, "lookup", counted)
    monkeypatch.setattr(match, "SELECTED_HITS", 200)
    sampled = top(index, query)
    assert len(lookups) == 2  # the rarest hashes, then the candidates' scales
    assert (sampled.key, sampled.score, sampled.speed, sampled.offset) == (
        whole.key, whole.score, whole.speed, whole.offset)
    assert whole.key == 2 and whole.speed == pytest.approx(factor, abs=0.008)


def test_without_a_high_match_among_the_rarest_hashes_every_hash_is_looked_up(
        clips: list[np.ndarray], index: AudioIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy whose landmarks all sit among common hashes shows no confident match in the
    sample: the search goes on with every hash, and finds what it would have found at once."""
    query = fingerprint(mix(excerpt(clips[4], 2.0, 6.0), noise(6.0, 9), -3.0))
    whole = [(m.key, m.score) for m in index.search(query, top_k=3)]
    monkeypatch.setattr(match, "SELECTED_HITS", 1)
    assert [(m.key, m.score) for m in index.search(query, top_k=3)] == whole
    assert whole[0][0] == 4


@pytest.mark.parametrize("factor", [0.97, 1.03])
def test_a_tempo_change_that_keeps_the_pitch_is_found(
        clips: list[np.ndarray], index: AudioIndex, factor: float) -> None:
    m = top(index, tempo(clips[3], factor))
    assert m.key == 3 and calibration.confidence(m.score) == "high"
    assert (m.speed, m.pitch) == pytest.approx((factor, 1.0), abs=0.008)
    assert m.offset == pytest.approx(0.0, abs=0.15)


@pytest.mark.parametrize("edit", ["music 0 dB", "pink noise 0 dB", "telephone", "clipped"])
def test_mixed_band_limited_and_clipped_copies_are_found(
        clips: list[np.ndarray], index: AudioIndex, edit: str) -> None:
    x = clips[4]
    copy = {
        "music 0 dB": lambda: mix(x, melody(SECONDS, 99), 0.0),
        "pink noise 0 dB": lambda: mix(x, noise(SECONDS, 5, "pink"), 0.0),
        "telephone": lambda: telephone(x),
        "clipped": lambda: np.clip(level(x, 0.0), -0.5, 0.5),
    }[edit]()
    m = top(index, copy)
    assert m.key == 4 and m.offset == pytest.approx(0.0, abs=0.1)
    assert calibration.confidence(m.score) in ("high", "medium")


def test_unrelated_audio_gets_no_confident_match(index: AudioIndex) -> None:
    for seed in (100, 101, 102):
        found = index.search(fingerprint(melody(SECONDS, seed)), top_k=1)
        assert all(calibration.confidence(m.score) == "low" for m in found)


def test_silence_matches_nothing(index: AudioIndex) -> None:
    query = fingerprint(np.zeros(5 * RATE))
    assert query.silent
    assert index.search(query, top_k=5) == []


def test_compare_aligns_two_fingerprints(clips: list[np.ndarray]) -> None:
    m = compare(fingerprint(excerpt(clips[0], 3.0, 6.0)).peaks, fingerprint(clips[0]).peaks)
    assert m is not None and m.offset == pytest.approx(3.0, abs=0.1)
    assert compare(fingerprint(clips[5]).peaks, fingerprint(clips[0]).peaks) is None


def test_a_deleted_item_is_no_longer_found(clips: list[np.ndarray]) -> None:
    index = AudioIndex()
    index.add(1, fingerprint(clips[0]))
    query = fingerprint(excerpt(clips[0], 1.0, 5.0))
    assert [m.key for m in index.search(query, 1)] == [1]
    index.remove(1)
    assert index.search(query, 1) == []


def test_a_bulk_loaded_index_finds_what_item_by_item_adds_find(clips: list[np.ndarray],
                                                               index: AudioIndex) -> None:
    bulk = AudioIndex()
    bulk.add_many([(key, key % 2, fingerprint(x)) for key, x in enumerate(clips)])
    query = fingerprint(excerpt(clips[5], 4.0, 5.0))
    assert [m.key for m in bulk.search(query, 1)] == [m.key for m in index.search(query, 1)] \
        == [5]
    assert [m.key for m in bulk.search(query, 1, tenant=1)] == [5]
    assert bulk.search(query, 1, tenant=0) == []  # key 5 is tenant 1's


def test_a_true_alignment_stands_out_of_a_million_chance_hits() -> None:
    """Past SORTED_VOTES hits, only the fullest cells of a hashed histogram are counted
    exactly: the one bin where an item's hits pile up must survive it, on either grid."""
    rng = np.random.default_rng(3)
    n = 1_000_000
    assert n > match.SORTED_VOTES
    for true_offset in (1234.1, 1236.0):  # inside a grid 0 bin, on its edge
        keys = rng.integers(0, 20_000, n).astype(np.int32)
        offsets = rng.uniform(-500, 9000, n).astype(np.float32)
        scales = rng.integers(0, len(match.SCALES), n).astype(np.uint8)
        keys[:25], scales[:25] = 77, 3
        offsets[:25] = true_offset + rng.uniform(-0.8, 0.8, 25)
        hits = Hits(np.zeros(n, np.int64), keys, np.zeros(n, np.int32))
        votes = match._Votes(hits, scales, np.zeros(n, np.float32), offsets)
        key, scale, bin_, grid = match._best_bins(votes, None)[0]
        centre = (bin_ - 0.5 * grid + 0.5) * match.OFFSET_BIN
        assert (key, scale) == (77, 3) and abs(centre - true_offset) <= match.OFFSET_BIN / 2

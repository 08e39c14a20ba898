"""A video's soundtrack is searchable as audio: a voice-over reused across a video listing and
an audio listing is found either way, with where it sits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest

from medialayer import MediaLayer
from medialayer.config import Settings
from medialayer.jobs import JobRunner, submit_csv
from medialayer.kinds import get_kind
from medialayer.kinds.base import Encoded, tracks_of
from medialayer.results import MediaRef

import video_synth
from audio_synth import RATE, melody, write

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

SECONDS = 20.0
FPS = 10


def video_with_sound(path: Path, seed: int, sound: np.ndarray | None) -> Path:
    """A slideshow MP4 (H.264) with `sound` as its AAC soundtrack, or without audio."""
    clip = video_synth.slideshow(seed, SECONDS, (160, 96))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = *clip.size, "yuv420p"
        video.options = {"preset": "superfast"}
        packets = []
        for k in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(clip.frame_at(k / FPS), format="rgb24")
            packets += video.encode(frame)
        packets += video.encode(None)
        if sound is not None:
            audio = out.add_stream("aac", rate=RATE, layout="mono")
            pcm = (np.clip(sound, -1, 1) * 32767).astype(np.int16)
            for at in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(pcm[None, at: at + 1024], format="s16",
                                                   layout="mono")
                frame.sample_rate, frame.time_base, frame.pts = RATE, Fraction(1, RATE), at
                packets += audio.encode(frame)
            packets += audio.encode(None)
        for packet in packets:
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return melody(SECONDS, 41)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, voice: np.ndarray) -> dict[str, Path]:
    """The video with the voice-over, one without sound, an audio listing reusing the voice's
    seconds 2-14, and the query: seconds 6-16 of the voice, as MP3."""
    d = tmp_path_factory.mktemp("soundtrack")
    return {"video": video_with_sound(d / "v.mp4", 1, voice),
            "mute": video_with_sound(d / "mute.mp4", 2, None),
            "listing": write(d / "listing.m4a", voice[2 * RATE: 14 * RATE]),
            "other": write(d / "other.wav", melody(12.0, 42)),
            "query": write(d / "q.mp3", voice[6 * RATE: 16 * RATE])}


@pytest.fixture
def ml(tmp_path: Path) -> MediaLayer:
    layer = MediaLayer(tmp_path / "data")
    yield layer
    layer.close()


def _starts_at(hit_segments: list, reference: float, query: float = 0.0) -> None:
    s = hit_segments[0]
    assert s.reference_start - s.query_start == pytest.approx(reference - query, abs=0.5)


def test_an_audio_excerpt_finds_the_video_it_was_cut_from(ml: MediaLayer,
                                                           files: dict[str, Path]) -> None:
    video = ml.index(files["video"], external_id="v")
    ml.index(files["other"], external_id="o")
    hits = ml.search(files["query"], "audio", top_k=3).results
    assert hits[0].media.id == video.id and hits[0].media.media_type == "video"
    assert hits[0].confidence == "high"
    _starts_at(hits[0].segments, 6.0)
    assert all(h.confidence == "low" for h in hits[1:])
    compared = ml.compare(files["query"], MediaRef(video.id), "audio")
    assert compared.confidence == "high"
    ml.delete(video.id)
    assert [h.media.media_type for h in ml.search(files["query"], "audio").results
            if h.confidence != "low"] == []


def test_a_reused_voice_over_is_found_across_video_and_audio_listings(
        ml: MediaLayer, files: dict[str, Path]) -> None:
    listing = ml.index(files["listing"], external_id="a")
    video = ml.index(files["video"], external_id="v")
    found = {h.media.id: h for h in ml.search(files["query"], "audio").results}
    assert found[video.id].confidence == found[listing.id].confidence == "high"
    _starts_at(found[listing.id].segments, 4.0)
    by_video = ml.search(files["video"], "audio").results  # the video's own sound as a query
    assert {h.media.id for h in by_video if h.confidence == "high"} == {video.id, listing.id}
    _starts_at([h for h in by_video if h.media.id == listing.id][0].segments, 0.0, 2.0)
    excerpt = ml.index(files["query"], external_id="q")  # after the video: it finds both
    assert [{m.id for m in c.members} for c in ml.clusters()] == [{listing.id, excerpt.id}]


def test_the_soundtrack_follows_a_video_added_by_a_search_and_replaced_by_an_upsert(
        ml: MediaLayer, files: dict[str, Path]) -> None:
    added = ml.search(files["video"], "video", index=True, external_id="v").query_media
    assert added is not None
    assert [h.media.id for h in ml.search(files["query"], "audio").results] == [added.id]
    record, created = ml.upsert(files["mute"], "video", "v")  # replaced by a silent video
    assert (record.id, created) == (added.id, False)
    assert ml.search(files["query"], "audio").results == []


def test_a_video_without_sound_is_indexed_and_has_no_track(ml: MediaLayer,
                                                          files: dict[str, Path]) -> None:
    kind = get_kind("video")
    assert tracks_of(kind.encode(kind.stored(files["mute"]))) == []
    encoded: Encoded = kind.encode(kind.stored(files["video"]))
    assert [(t.kind, t.duration) for t in tracks_of(encoded)] == [
        ("audio", pytest.approx(SECONDS, abs=0.1))]
    mute = ml.index(files["mute"])
    assert [h.media.id for h in ml.search(files["mute"], "video").results][:1] == [mute.id]
    assert ml.search(files["query"], "audio").results == []
    assert ml.index_sizes()["audio"][0] == 0


def test_the_soundtrack_index_is_rebuilt_and_kept_in_step_across_processes(
        tmp_path: Path, files: dict[str, Path]) -> None:
    """A second MediaLayer on the same catalog stands for another process: one built from
    the catalog at start, and one that hears of another's writes and deletes by polling."""
    first = MediaLayer(tmp_path / "data")
    try:
        video = first.index(files["video"], tenant="t1")
        first.index(files["mute"], tenant="t1")
        assert first.search(files["query"], "audio", tenant="t2").results == []
        second = MediaLayer(tmp_path / "data")
        try:
            hits = second.search(files["query"], "audio", tenant="t1").results
            assert [h.media.id for h in hits] == [video.id]
            _starts_at(hits[0].segments, 6.0)
            assert second.search(files["query"], "audio", tenant="t2").results == []
            again = second.index(files["video"], tenant="t2")
            second.delete(video.id, tenant="t1")
            first.sync()
            assert first.search(files["query"], "audio", tenant="t1").results == []
            assert [h.media.id for h in first.search(files["query"], "audio",
                                                     tenant="t2").results] == [again.id]
        finally:
            second.close()
    finally:
        first.close()


def test_a_video_is_found_by_an_audio_upload_over_http(api: Api, headers: dict[str, str],
                                                        files: dict[str, Path]) -> None:
    created = api.client.post("/v1/media/video/upload", headers=headers,
                              files={"file": ("v.mp4", files["video"].read_bytes(), "video/mp4")})
    assert created.status_code == 201, created.text
    found = api.client.post("/v1/search/audio/upload", headers=headers,
                            files={"file": ("q.mp3", files["query"].read_bytes(), "audio/mpeg")})
    assert found.status_code == 200, found.text
    top = found.json()["results"][0]
    assert (top["media_id"], top["media_type"]) == (created.json()["id"], "video")
    segment = top["segments"][0]
    assert segment["reference_start"] - segment["query_start"] == pytest.approx(6.0, abs=0.5)
    elsewhere = api.client.post("/v1/search/audio/upload", headers=api.key("other"),
                                files={"file": ("q.mp3", files["query"].read_bytes(),
                                                "audio/mpeg")})
    assert elsewhere.json()["results"] == []


def test_a_video_of_a_bulk_csv_row_is_found_by_its_sound(tmp_path: Path, files: dict[str, Path],
                                                         make_settings: Callable[..., Settings]
                                                         ) -> None:
    """The row is fingerprinted in the job's pool, the soundtrack with it."""
    ml = MediaLayer(tmp_path / "data")
    try:
        job_id = submit_csv(ml, f"path,external_id\n{files['video']},v\n", "default",
                            make_settings(), allow_paths=True)
        with ThreadPoolExecutor(1) as pool:
            asyncio.run(JobRunner(ml, make_settings(), pool=pool).run_until_idle(job_id))
        hits = ml.search(files["query"], "audio").results
        assert [(h.media.external_id, h.media.media_type) for h in hits] == [("v", "video")]
        _starts_at(hits[0].segments, 6.0)
    finally:
        ml.close()

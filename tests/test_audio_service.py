"""The audio kind end to end through the library and the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from medialayer import MediaLayer, UnsupportedMedia

from audio_synth import RATE, melody, mix, noise, speed, write

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


@pytest.fixture
def ml(tmp_path: Path) -> MediaLayer:
    layer = MediaLayer(tmp_path / "data")
    yield layer
    layer.close()


def test_a_noisy_sped_up_excerpt_is_found_with_where_it_sits(ml: MediaLayer,
                                                              tmp_path: Path) -> None:
    clips = [melody(15.0, seed) for seed in range(3)]
    records = [ml.index(write(tmp_path / f"c{i}.wav", x), "audio", external_id=f"c{i}")
               for i, x in enumerate(clips)]
    copy = speed(mix(clips[1][4 * RATE: 12 * RATE], noise(8.0, 3, "pink"), 10.0), 1.03)
    hits = ml.search(write(tmp_path / "q.mp3", copy), "audio", top_k=3).results
    assert hits[0].media.id == records[1].id and hits[0].confidence == "high"
    s = hits[0].segments[0]  # query second t is reference second 4 + 1.03 t
    assert s.reference_start == pytest.approx(4.0 + 1.03 * s.query_start, abs=0.15)
    assert all(h.confidence == "low" for h in hits[1:])


def test_deleted_audio_is_not_found_and_silence_is_refused(ml: MediaLayer,
                                                          tmp_path: Path) -> None:
    x = melody(10.0, 7)
    record = ml.index(write(tmp_path / "a.flac", x), "audio")
    query = write(tmp_path / "q.ogg", x[2 * RATE: 8 * RATE])
    assert [h.media.id for h in ml.search(query, "audio").results] == [record.id]
    ml.delete(record.id)
    assert ml.search(query, "audio").results == []
    silence = write(tmp_path / "s.wav", np.zeros(3 * RATE))
    with pytest.raises(UnsupportedMedia, match="silent"):
        ml.index(silence, "audio")
    assert ml.search(silence, "audio").results == []


def test_audio_over_http_upload_search_and_bad_input(api: Api, headers: dict[str, str],
                                                     tmp_path: Path) -> None:
    x = melody(10.0, 11)
    wav = write(tmp_path / "a.wav", x).read_bytes()
    created = api.client.post("/v1/media/audio/upload", headers=headers,
                              files={"file": ("a.wav", wav, "audio/wav")})
    assert created.status_code == 201, created.text
    mp3 = write(tmp_path / "q.mp3", x[3 * RATE: 9 * RATE]).read_bytes()
    found = api.client.post("/v1/search/audio/upload", headers=headers,
                            files={"file": ("q.mp3", mp3, "audio/mpeg")})
    assert found.status_code == 200, found.text
    top = found.json()["results"][0]
    assert top["media_id"] == created.json()["id"] and top["confidence"] == "high"
    assert top["segments"][0]["reference_start"] == pytest.approx(
        3.0 + top["segments"][0]["query_start"], abs=0.1)
    garbage = api.client.post("/v1/media/audio/upload", headers=headers,
                              files={"file": ("x.mp3", b"\x00garbage" * 100, "audio/mpeg")})
    assert garbage.status_code == 415 and garbage.json()["error"]["code"] == "unsupported_media"

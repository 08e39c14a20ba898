"""Videos through the HTTP API: index, search with segments, compare, clear errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from video_synth import slideshow, trimmed, write

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

H = dict[str, str]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("api-video")
    source = slideshow(11, 12.0)
    return {name: write(clip, folder / f"{name}.mp4").read_bytes() for name, clip in (
        ("original", source), ("excerpt", trimmed(source, 4.0, 6.0)),
        ("other", slideshow(12, 10.0)))}


def upload(api: Api, headers: H, route: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return api.client.post(route, headers=headers, files={"file": (f"{name}.mp4", data)})


def test_excerpt_found_with_its_segment(api: Api, headers: H, clips: dict[str, bytes]) -> None:
    for name in ("original", "other"):
        response = upload(api, headers, "/v1/media/video/upload", name, clips[name])
        assert response.status_code == 201, response.text
        assert response.json()["media_type"] == "video"
    response = upload(api, headers, "/v1/search/video/upload", "q", clips["excerpt"])
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert top["name"] == "original.mp4"
    assert top["confidence"] in ("high", "medium")
    segment = top["segments"][0]
    assert segment["reference_start"] == pytest.approx(4.0, abs=1.0)
    assert segment["query_start"] == pytest.approx(0.0, abs=1.0)


def test_compare_uploads(api: Api, headers: H, clips: dict[str, bytes]) -> None:
    response = api.client.post("/v1/compare/upload", headers=headers, data={"media_type": "video"},
                               files={"a": ("a.mp4", clips["excerpt"]),
                                      "b": ("b.mp4", clips["original"])})
    assert response.status_code == 200, response.text
    assert response.json()["segments"]


def test_undecodable_upload_is_415(api: Api, headers: H, clips: dict[str, bytes]) -> None:
    for data in (b"not a video at all" * 100, clips["original"][:5000]):
        response = upload(api, headers, "/v1/media/video/upload", "bad", data)
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media"

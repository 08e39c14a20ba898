"""Video matching: edited copies found through the index, with the right aligned segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medialayer.kinds.video import frames
from medialayer.kinds.video.decode import sample
from medialayer.kinds.video.search import VideoIndex, VideoMatch, compare

from video_synth import (
    Clip,
    cropped,
    dimmed,
    faster,
    letterboxed,
    mirrored,
    slideshow,
    trimmed,
    write,
)

SOURCE = 1
OTHERS = (2, 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def catalog(folder: Path) -> VideoIndex:
    """The source video and two unrelated ones, indexed as catalog items (keyframes only)."""
    stored = {}
    for seed in (SOURCE, *OTHERS):
        fp = frames.fingerprint(write(slideshow(seed, 14.0), folder / f"{seed}.mp4", crf=18))
        stored[seed] = frames.decode(frames.encode(fp))
    index = VideoIndex(lambda keys: {k: stored[k] for k in keys if k in stored})
    for key, fp in stored.items():
        index.add(key, fp)
    return index


def search(index: VideoIndex, folder: Path, clip: Clip, name: str, **kw: int) -> VideoMatch:
    query = frames.fingerprint(write(clip, folder / name, **kw), query=True)
    matches = index.search(query, top_k=3)
    assert matches and matches[0].key == SOURCE
    assert all(m.score < matches[0].score for m in matches[1:])
    return matches[0]


def assert_whole(match: VideoMatch, speed: float = 1.0) -> None:
    """One segment over (nearly) all of both videos, on the line t_ref = speed * t_query."""
    assert match.confidence == "high"
    assert match.speed == pytest.approx(speed, abs=0.02)
    assert match.offset == pytest.approx(0.0, abs=0.3)
    assert match.query_share > 0.8 and match.reference_share > 0.8
    span = match.spans[0]
    assert span.reference_start == pytest.approx(0.0, abs=0.5)
    assert span.query_start == pytest.approx(0.0, abs=0.5)


def test_reencoded_copy(catalog: VideoIndex, folder: Path) -> None:
    assert_whole(search(catalog, folder, slideshow(SOURCE, 14.0), "crf.mp4", crf=35, fps=15))


def test_letterboxed_copy(catalog: VideoIndex, folder: Path) -> None:
    assert_whole(search(catalog, folder, letterboxed(slideshow(SOURCE, 14.0)), "box.mp4"))


def test_mirrored_copy(catalog: VideoIndex, folder: Path) -> None:
    match = search(catalog, folder, mirrored(slideshow(SOURCE, 14.0)), "flip.mp4")
    assert match.mirrored
    assert_whole(match)


def test_cropped_copy(catalog: VideoIndex, folder: Path) -> None:
    assert_whole(search(catalog, folder, cropped(slideshow(SOURCE, 14.0), 0.9, 0.3, 0.8),
                        "crop.mp4"))


def test_sped_up_copy_fits_the_speed(catalog: VideoIndex, folder: Path) -> None:
    assert_whole(search(catalog, folder, faster(slideshow(SOURCE, 14.0), 1.1), "fast.mp4"),
                 speed=1.1)


def test_trimmed_copy_reports_where_it_starts(catalog: VideoIndex, folder: Path) -> None:
    match = search(catalog, folder, trimmed(slideshow(SOURCE, 14.0), 5.2, 6.0), "cut.mp4")
    assert match.confidence in ("high", "medium")
    assert match.offset == pytest.approx(5.2, abs=0.5)
    assert match.query_share > 0.8
    assert match.reference_share == pytest.approx(6.0 / 14.0, abs=0.15)
    first = match.spans[0]
    assert first.reference_start == pytest.approx(5.2, abs=1.0)
    assert first.query_start == pytest.approx(0.0, abs=1.0)


def test_unrelated_video_is_not_a_confident_match(catalog: VideoIndex,
                                                  folder: Path) -> None:
    query = frames.fingerprint(write(slideshow(9, 10.0), folder / "other.mp4"), query=True)
    assert all(m.confidence == "low" for m in catalog.search(query, top_k=3))


def test_dark_letterboxed_copy_is_cut_to_the_same_picture(folder: Path) -> None:
    """A dark wallpaper's darkest corner is as near black as the bars: the bars are what stays
    still, so the original is not cut into and its letterboxed copy is cut to the same picture
    (a box cut near the bars' colour cut the two by different amounts and missed the copy)."""
    source = dimmed(slideshow(SOURCE, 14.0))
    original = write(source, folder / "dark.mp4", crf=18)
    boxed = write(letterboxed(source), folder / "dark-box.mp4")
    h, w = source.size[1] * 96 // source.size[0], 96
    assert frames.video_box(sample(original, frames.CATALOG).pixels) == (0, h, 0, w)
    top = (source.size[0] - source.size[1]) // 2 * 96 // source.size[0]
    y0, y1, x0, x1 = frames.video_box(sample(boxed, frames.QUERY).pixels)
    assert (x0, x1) == (0, w) and 0 <= y0 - top <= 1 and 0 <= h - (y1 - y0) <= 2
    stored = {k: frames.fingerprint(p) for k, p in [
        (SOURCE, original), (OTHERS[0], write(dimmed(slideshow(OTHERS[0], 14.0)),
                                              folder / "dark-other.mp4", crf=18))]}
    index = VideoIndex(lambda keys: {k: stored[k] for k in keys})
    for key, fp in stored.items():
        index.add(key, fp)
    matches = index.search(frames.fingerprint(boxed, query=True), top_k=2)
    assert matches[0].key == SOURCE
    assert_whole(matches[0])
    assert all(m.confidence == "low" for m in matches[1:])


def test_stored_form_round_trips(folder: Path) -> None:
    fp = frames.fingerprint(write(slideshow(4, 4.0), folder / "rt.mp4"))
    back = frames.decode(frames.encode(fp))
    assert np.array_equal(back.times, fp.times) and np.array_equal(back.codes, fp.codes)
    assert np.array_equal(back.thumbs, fp.thumbs) and back.duration == pytest.approx(fp.duration)


def test_compare_needs_no_index(folder: Path) -> None:
    a = frames.fingerprint(write(slideshow(SOURCE, 14.0), folder / "a.mp4"), query=True)
    b = frames.fingerprint(folder / f"{OTHERS[0]}.mp4")
    assert compare(a, frames.fingerprint(folder / f"{SOURCE}.mp4")).confidence == "high"
    assert compare(a, b).confidence == "low"

"""Video decoding: sampled frames from every container we accept, clear errors for the rest."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.kinds import get_kind, kinds
from medialayer.kinds.video.decode import Limits, Sampling, sample
from medialayer.service import SNIFF_BYTES

from video_synth import slideshow, write


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(slideshow(5, 6.0), tmp_path_factory.mktemp("v") / "clip.mp4")


@pytest.mark.parametrize(("name", "codec", "container"), [
    ("clip.mov", "libx264", "mov"),
    ("clip.webm", "libvpx", "webm"),
    ("clip.mkv", "libx264", "matroska"),
    ("clip.avi", "mpeg4", "avi"),
    ("clip.ts", "mpeg2video", "mpegts"),
    ("clip.gif", "gif", "gif"),
])
def test_containers_decode_to_sampled_frames(tmp_path: Path, name: str, codec: str,
                                             container: str) -> None:
    path = write(slideshow(5, 3.0, size=(160, 90)), tmp_path / name, fps=10, codec=codec,
                 container=container)
    frames = sample(path, Sampling(fps=2.0, width=64))
    assert frames.pixels.shape[1:] == (36, 64)
    assert 5 <= len(frames.times) <= 8  # two a second of three seconds, plus keyframes
    assert frames.times[0] == 0 and np.all(np.diff(frames.times) > 0)
    assert 2.5 <= frames.duration <= 3.5
    # without a media_type, the first bytes name exactly one kind: an animated GIF is an image
    claimed = [k.name for k in kinds().values() if k.sniff(path.read_bytes()[:SNIFF_BYTES])]
    assert claimed == (["image"] if container == "gif" else ["video"])


@pytest.mark.parametrize("head", [
    b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom",  # audio in an MP4 box
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
    b"\x47" + b"\x00" * 200,  # one sync byte is not a transport stream
])
def test_iso_brands_of_other_kinds_are_not_video(head: bytes) -> None:
    assert not get_kind("video").sniff(head)


def test_a_stream_gives_the_frames_of_its_file(clip_mp4: Path) -> None:
    with clip_mp4.open("rb") as f:
        f.read(100)  # read from its start whatever was read before
        frames = sample(f)
        assert not f.closed  # the caller's stream stays open
    assert np.array_equal(frames.times, sample(clip_mp4).times)


def test_bytes_and_path_give_the_same_frames(clip_mp4: Path) -> None:
    a, b = sample(clip_mp4), sample(clip_mp4.read_bytes())
    assert np.array_equal(a.times, b.times) and np.array_equal(a.pixels, b.pixels)


def test_keyframe_sampling_keeps_scene_changes_only(clip_mp4: Path) -> None:
    dense = sample(clip_mp4, Sampling(fps=4.0))
    keys = sample(clip_mp4, Sampling(fps=4.0, keyframes=True, max_gap=10.0))
    assert 1 <= len(keys.times) < len(dense.times) / 4
    assert set(keys.times.tolist()) <= set(dense.times.tolist())


def test_sparse_keyframes_fall_back_to_regular_samples(clip_mp4: Path) -> None:
    frames = sample(clip_mp4, Sampling(keyframes=True, max_gap=1.0))
    assert len(frames.times) >= 6


def test_truncated_file_is_unsupported(clip_mp4: Path) -> None:
    data = clip_mp4.read_bytes()
    with pytest.raises(UnsupportedMedia):
        sample(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"\x00" * 10_000, os.urandom(50_000),
                                  b"\x00\x00\x00\x18ftypisom" + os.urandom(50_000)])
def test_empty_and_garbage_bytes_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        sample(data)


def test_audio_only_file_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=22050)
        samples = (np.sin(np.arange(22050) / 5) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 22050
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        sample(path)


def test_huge_resolution_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 4800, 4800, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((4800, 4800, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(MediaTooLarge, match="4800x4800"):
        sample(path)


def test_duration_over_the_cap_is_too_large(clip_mp4: Path) -> None:
    with pytest.raises(MediaTooLarge):
        sample(clip_mp4, limits=Limits(max_duration=3.0))


def test_endless_stream_is_stopped_at_the_decode_deadline(tmp_path: Path) -> None:
    """A pipe that never ends (the same stream over and over) would keep a worker forever."""
    segment = write(slideshow(6, 2.0, size=(160, 90)), tmp_path / "seg.ts", fps=10,
                    codec="mpeg2video", container="mpegts").read_bytes()
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with open(fifo, "wb") as pipe:
                while True:
                    pipe.write(segment)
        except (BrokenPipeError, OSError):
            return

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with pytest.raises(UnsupportedMedia, match="stopped"):
        sample(fifo, limits=Limits(max_decode_seconds=1.0))
    writer.join()


def test_thumbnail_is_a_small_jpeg_of_the_first_frame(clip_mp4: Path, tmp_path: Path) -> None:
    jpeg = get_kind("video").thumbnail(clip_mp4, 64)
    assert jpeg is not None
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.format == "JPEG" and im.size == (64, 36)
        first = np.asarray(im.convert("RGB"), np.float32).mean(axis=(0, 1))
    poster = slideshow(5, 6.0).frame_at(0.0).astype(np.float32).mean(axis=(0, 1))
    assert np.abs(first - poster).max() < 12  # the same picture, colours and all
    (tmp_path / "fake.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(UnsupportedMedia):
        get_kind("video").thumbnail(tmp_path / "fake.mp4", 64)

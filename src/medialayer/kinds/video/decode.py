"""Video decoding through PyAV: sampled, small, gray frames under hard limits.

A fingerprint needs a few small frames per second, not the movie: the decoder skips the frames
nothing refers to (B-frames) and its loop filter, and each kept frame is read straight from its
luma plane and shrunk. Everything that can be checked before decoding (real type, streams,
resolution, declared duration) is; what cannot (real duration, decode time) is enforced while
decoding, and every read goes through a reader that stops at the deadline, so a hostile or
stalling source ends in a clear error instead of a hung worker.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import IO, Any

import av
import cv2
import numpy as np

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.sniff import VIDEO_FORMATS, sniff

Source = str | os.PathLike[str] | bytes | IO[bytes]
"""A file path (streamed from disk), the file's bytes, or a seekable binary stream (read from its
start; the caller keeps it open)."""


@dataclass(frozen=True)
class Limits:
    """What one video may cost. Over a size cap is "too large" (413); anything the decoder
    cannot finish in time or at all is "unsupported" (415)."""

    max_duration: float = 3600.0
    max_pixels: int = 4096 * 2304
    max_streams: int = 16
    max_decode_seconds: float = 60.0


@dataclass(frozen=True)
class Sampling:
    """Which frames to keep: at most `fps` per second, shrunk to `width` pixels wide.

    `keyframes` decodes only the frames that need no other: encoders put them at scene changes
    (and every few seconds), so they are what a catalog item's fingerprint keeps, at a tenth
    of the cost of decoding the rest. A query decodes every reference frame instead, so that
    some of its frames fall near whatever times the catalog's encoder chose.
    """

    fps: float = 2.0
    width: int = 96
    keyframes: bool = False
    max_gap: float = 5.0
    """With `keyframes`, a video whose keyframes are on average further apart than this (an
    encoder without scene-change detection) is decoded again with every reference frame."""


DEFAULT_LIMITS = Limits()
DEFAULT_SAMPLING = Sampling()
_HEAD = 1024  # enough to sniff every format, MPEG-TS included
_FORMATS = VIDEO_FORMATS | {"gif"}  # an animated GIF is a video to a marketplace


@dataclass(frozen=True)
class Frames:
    """Sampled frames: times in seconds from the first frame, and same-size gray pixels."""

    times: np.ndarray  # float32 (n,)
    pixels: np.ndarray  # uint8 (n, h, w)
    duration: float


def sample(source: Source, sampling: Sampling = DEFAULT_SAMPLING,
           limits: Limits = DEFAULT_LIMITS) -> Frames:
    """The sampled frames of the first video stream, or a clear error."""
    deadline = time.monotonic() + limits.max_decode_seconds
    frames = _sample(source, sampling, limits, deadline)
    if sampling.keyframes and frames.duration > sampling.max_gap * len(frames.times):
        dense = replace(sampling, keyframes=False, fps=1.0 / sampling.max_gap * 2)
        frames = _sample(source, dense, limits, deadline)
    return frames


def poster(source: Source, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """The first keyframe in RGB (height, width, 3), what a report shows of the video."""
    deadline = time.monotonic() + limits.max_decode_seconds
    with _decoding(_reader(source, deadline)) as container:
        stream = _video_stream(container, limits)
        stream.codec_context.skip_frame = "NONKEY"
        for frame in _decoded(container, stream, deadline):
            return np.asarray(frame.to_ndarray(format="rgb24"))
    raise UnsupportedMedia("the video has no decodable frame")


def _sample(source: Source, sampling: Sampling, limits: Limits, deadline: float) -> Frames:
    with _decoding(_reader(source, deadline)) as container:
        stream = _video_stream(container, limits)
        stream.codec_context.skip_frame = "NONKEY" if sampling.keyframes else "NONREF"
        times, pixels = _collect(_decoded(container, stream, deadline), stream, sampling,
                                 limits)
        span = _end(container, stream)
    if not times:
        raise UnsupportedMedia("the video has no decodable frame")
    t = np.asarray(times, np.float32) - times[0]
    return Frames(t, np.stack(pixels), max(span - times[0], float(t[-1]) + 1.0 / sampling.fps))


def _reader(source: Source, deadline: float) -> _DeadlineReader:
    """The source behind the deadline, after its first bytes proved it a video."""
    if isinstance(source, str | os.PathLike | bytes):
        reader = _DeadlineReader(_open_bytes(source), deadline)
    else:
        if source.seekable():
            source.seek(0)
        reader = _DeadlineReader(source, deadline, owned=False)
    _check_type(reader.peek())
    return reader


@contextmanager
def _decoding(reader: _DeadlineReader) -> Iterator[Any]:
    """The open container; whatever FFmpeg or the deadline raise becomes a clear error."""
    try:
        with av.open(reader, mode="r", metadata_errors="ignore") as container:
            yield container
    except (MediaTooLarge, UnsupportedMedia):
        raise
    except _Stopped as e:
        raise UnsupportedMedia(f"video decoding stopped: {e}") from e
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:
        raise UnsupportedMedia(f"cannot decode video: {e}") from e


class _Stopped(Exception):
    """The decode deadline passed."""


class _DeadlineReader(io.RawIOBase):
    """A readable, seekable file that refuses to read once the deadline has passed: FFmpeg reads
    through it, so even a demuxer looping over a hostile file comes back to Python to stop."""

    def __init__(self, raw: IO[bytes], deadline: float, owned: bool = True) -> None:
        self._raw = raw
        self._deadline = deadline
        self._owned = owned

    def peek(self) -> bytes:
        """The first bytes, without consuming them (the source may be a pipe)."""
        if not self._raw.seekable():
            return self._raw.peek(_HEAD)[:_HEAD]  # type: ignore[attr-defined, no-any-return]
        start = self._raw.tell()
        head = self._raw.read(_HEAD)
        self._raw.seek(start)
        return head

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def readinto(self, buffer: Any) -> int:
        if time.monotonic() > self._deadline:
            raise _Stopped("over the decode-time cap")
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if self._owned:
            self._raw.close()
        super().close()


def _open_bytes(source: str | os.PathLike[str] | bytes) -> IO[bytes]:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    try:
        return open(source, "rb")  # noqa: SIM115 - closed by the reader that wraps it
    except OSError as e:
        raise UnsupportedMedia(f"cannot read video: {e}") from e


def _check_type(head: bytes) -> None:
    kind = sniff(head)
    if kind not in _FORMATS:
        raise UnsupportedMedia(f"not a supported video (detected: {kind or 'unknown'})")


def _video_stream(container: Any, limits: Limits) -> Any:
    """The first video stream, after the checks that need no decoding."""
    if len(container.streams) > limits.max_streams:
        raise UnsupportedMedia(f"{len(container.streams)} streams, over the cap of "
                               f"{limits.max_streams}")
    if not container.streams.video:
        raise UnsupportedMedia("no video stream (audio only?)")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > limits.max_pixels:
        raise MediaTooLarge(f"video is {width}x{height} pixels, over the cap of "
                            f"{limits.max_pixels}")
    declared = container.duration / av.time_base if container.duration else 0.0
    if declared > limits.max_duration:
        raise MediaTooLarge(f"video lasts {declared:.0f} s, over the cap of "
                            f"{limits.max_duration:.0f} s")
    # Deblocking is invisible at a fingerprint's size; frame threads would only add latency.
    stream.codec_context.options = {"skiploopfilter": "all"}
    stream.thread_type = "SLICE"
    return stream


def _end(container: Any, stream: Any) -> float:
    """When the stream ends by its header (0 when it does not say)."""
    if stream.duration and stream.time_base:
        return float((stream.start_time or 0) * stream.time_base
                     + stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration / av.time_base + (container.start_time or 0)
                     / av.time_base)
    return 0.0


def _decoded(container: Any, stream: Any, deadline: float) -> Iterator[Any]:
    for packet in container.demux(stream):
        if time.monotonic() > deadline:
            raise _Stopped("over the decode-time cap")
        yield from packet.decode()


def _collect(frames: Iterator[Any], stream: Any, sampling: Sampling, limits: Limits
             ) -> tuple[list[float], list[np.ndarray]]:
    """Keep the first frame of each 1/fps slot, and a query's keyframes (the encoder's scene
    changes, where a catalog item's frames are); stop at the duration cap."""
    base = stream.time_base or Fraction(1, 1000)
    times: list[float] = []
    pixels: list[np.ndarray] = []
    start: float | None = None
    size: tuple[int, int] | None = None
    next_slot = 0.0
    for frame in frames:
        if frame.pts is None:
            continue
        t = float(frame.pts * base)
        start = t if start is None else start
        if t - start > limits.max_duration:
            raise MediaTooLarge(f"video lasts over the cap of {limits.max_duration:.0f} s")
        if t - start < next_slot - 1e-3 and not (frame.key_frame and not sampling.keyframes):
            continue
        size = size or (sampling.width, max(1, round(sampling.width * frame.height
                                                     / max(1, frame.width))))
        times.append(t)
        pixels.append(_small_gray(frame, size))
        next_slot = (np.floor((t - start) * sampling.fps + 1e-3) + 1) / sampling.fps
    return times, pixels


def _small_gray(frame: Any, size: tuple[int, int]) -> np.ndarray:
    """The frame's luma at `size` (width, height), area-averaged.

    Planar YUV frames are read from their luma plane without any conversion; other layouts
    (GIF palettes, RGB) go through FFmpeg's scaler.
    """
    if frame.format.name.startswith(("yuv", "nv12", "gray")):
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        luma = luma[: frame.height, : frame.width]
    else:
        luma = frame.to_ndarray(format="gray")
    return cv2.resize(luma, size, interpolation=cv2.INTER_AREA)

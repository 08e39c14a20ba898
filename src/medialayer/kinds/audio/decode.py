"""Audio from any container PyAV (FFmpeg) opens, to mono PCM at one low fixed rate.

Everything a seller uploads is untrusted: the container's claimed duration is checked before any
packet is decoded, decoding stops at a sample cap and a wall-clock deadline, and whatever FFmpeg
refuses becomes `UnsupportedMedia`. The file is read from its path packet by packet, so a large
video costs the memory of its soundtrack at the working rate, never of the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np

from medialayer.errors import MediaTooLarge, UnsupportedMedia

SAMPLE_RATE = 8000
"""Hz. The landmarks live in 300-3500 Hz (what survives a telephone line), so 8 kHz keeps all of
it while costing the least to decode and transform."""


@dataclass(frozen=True)
class Limits:
    """Caps that turn hostile or absurd input into a clear error instead of a stuck worker."""

    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 30 * 60.0
    """Longest audio accepted (and the most decoded from a stream that hides its length)."""
    max_decode_seconds: float = 60.0
    """Wall-clock budget for decoding one file."""


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Pcm:
    """Mono float32 samples in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def decode_path(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Pcm:
    """Decode the first audio stream of the file at `path` (an audio file or a video)."""
    try:
        size = Path(path).stat().st_size
    except OSError as e:
        raise UnsupportedMedia(f"cannot read {path}: {e.strerror}") from e
    _check_size(size, limits)
    return _decode(str(path), limits)


def decode_stream(stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Pcm:
    """Decode from a seekable binary file object (an upload spooled to disk, a BytesIO)."""
    stream.seek(0, os.SEEK_END)
    _check_size(stream.tell(), limits)
    stream.seek(0)
    return _decode(stream, limits)


def _check_size(size: int, limits: Limits) -> None:
    if size == 0:
        raise UnsupportedMedia("the file is empty")
    if size > limits.max_bytes:
        raise MediaTooLarge(f"audio file is {size} bytes, over the {limits.max_bytes} cap")


def _decode(source: str | BinaryIO, limits: Limits) -> Pcm:
    deadline = time.monotonic() + limits.max_decode_seconds
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            stream = _audio_stream(container)
            _check_claimed_duration(container, stream, limits)
            samples = _read_samples(container, stream, limits, deadline)
    except (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError) as e:
        raise UnsupportedMedia(f"cannot decode audio: {e}") from e
    if len(samples) == 0:
        raise UnsupportedMedia("the file holds no audio samples")
    return Pcm(samples, SAMPLE_RATE)


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise UnsupportedMedia("no audio stream in the file")
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    return stream


def _check_claimed_duration(container: av.container.InputContainer,
                            stream: av.audio.stream.AudioStream, limits: Limits) -> None:
    """Refuse before decoding when the header already says the audio is too long."""
    claimed = None
    if stream.duration is not None and stream.time_base is not None:
        claimed = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        claimed = container.duration / av.time_base
    if claimed is not None and claimed > limits.max_seconds:
        raise MediaTooLarge(
            f"audio is {claimed:.0f} s long, over the {limits.max_seconds:.0f} s cap")


def _read_samples(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                  limits: Limits, deadline: float) -> np.ndarray:
    """Resample frame by frame; stop at the sample cap (an error) or the deadline (an error)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    cap = int(limits.max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = 0
    for frame in _frames(container, stream):
        for out in resampler.resample(frame):
            part = out.to_ndarray().reshape(-1)
            parts.append(part)
            total += len(part)
        if total > cap:
            raise MediaTooLarge(f"audio runs past the {limits.max_seconds:.0f} s cap")
        if time.monotonic() > deadline:
            raise MediaTooLarge(
                f"decoding took over the {limits.max_decode_seconds:.0f} s budget")
    for out in resampler.resample(None):
        parts.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)


def _frames(container: av.container.InputContainer,
            stream: av.audio.stream.AudioStream) -> Iterator[av.AudioFrame]:
    """Decoded frames of the stream; a corrupt packet mid-file is skipped, as a player would,
    instead of losing everything decoded so far."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue

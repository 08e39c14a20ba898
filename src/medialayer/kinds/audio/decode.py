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
        try:
            samples = _read(source, limits, deadline, _QUICK_OPEN)
        except (IndexError, _NoAudioStream):
            # FLV and MPEG-TS list their streams as their packets arrive, so one may show up
            # only after a short probe (and PyAV's demuxer trips over it): probe as far as
            # FFmpeg does by default
            if not isinstance(source, str):
                source.seek(0)
            samples = _read(source, limits, deadline, {})
    except (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError) as e:
        raise UnsupportedMedia(f"cannot decode audio: {e}") from e
    if len(samples) == 0:
        raise UnsupportedMedia("the file holds no audio samples")
    return Pcm(samples, SAMPLE_RATE)


class _NoAudioStream(UnsupportedMedia):
    pass


def _read(source: str | BinaryIO, limits: Limits, deadline: float, options: dict[str, str]
          ) -> np.ndarray:
    with av.open(source, mode="r", metadata_errors="ignore", options=options) as container:
        if not container.streams.audio:
            raise _NoAudioStream("no audio stream in the file")
        stream = container.streams.audio[0]
        stream.codec_context.thread_type = "AUTO"
        _check_claimed_duration(container, stream, limits)
        return _read_samples(container, stream, limits, deadline)


_QUICK_OPEN = {"probesize": "32", "max_size": str(1 << 16)}
"""FFmpeg's stream probe otherwise decodes up to 5 MB ahead (most of a short file, once more)
before the real decode starts; the samples' own rate and layout are read from each decoded
frame instead. With `max_size` the WAV demuxer hands over 64 KB packets instead of 4 KB ones,
so that the work per frame in Python stays small."""


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
    """Decoded frames gather in a FIFO and go to FFmpeg's resampler (mix-down to mono and
    resampling to SAMPLE_RATE) in blocks: a codec's frames are short, and each call into the
    resampler's filter graph costs more than resampling a frame. Stop at the duration cap or
    the deadline (both errors)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE,
                                  options=_MIXDOWN)
    fifo = av.AudioFifo()
    parts: list[np.ndarray] = []
    decoded = 0.0
    for frame in _frames(container, stream):
        decoded += frame.samples / (frame.sample_rate or SAMPLE_RATE)
        if decoded > limits.max_seconds:
            raise MediaTooLarge(f"audio runs past the {limits.max_seconds:.0f} s cap")
        if time.monotonic() > deadline:
            raise MediaTooLarge(
                f"decoding took over the {limits.max_decode_seconds:.0f} s budget")
        frame.pts = None  # the FIFO checks timestamps are contiguous; gaps do not matter here
        fifo.write(frame)
        if fifo.samples >= _BLOCK:
            parts.extend(_resample(resampler, fifo.read()))
    if fifo.samples:
        parts.extend(_resample(resampler, fifo.read()))
    parts.extend(_resample(resampler, None))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.clip(samples, -1.0, 1.0)


def _resample(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> list[np.ndarray]:
    return [out.to_ndarray()[0] for out in resampler.resample(frame)]


_BLOCK = 1 << 14
"""Source samples handed to the resampler at a time."""
_MIXDOWN = {"rematrix_maxval": "1"}
"""Scale the mix-down so that channels in phase cannot add up past full scale (stereo becomes
the mean of its channels, not their sum over the square root of two)."""


def _frames(container: av.container.InputContainer,
            stream: av.audio.stream.AudioStream) -> Iterator[av.AudioFrame]:
    """Decoded frames of the stream; a corrupt packet mid-file is skipped, as a player would,
    instead of losing everything decoded so far."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue

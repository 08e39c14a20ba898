"""Audio from any container PyAV (FFmpeg) opens, to mono PCM at one low fixed rate.

Everything a seller uploads is untrusted: the container's claimed duration is checked before any
packet is decoded, decoding stops at a sample cap and a wall-clock deadline, and whatever FFmpeg
refuses becomes `UnsupportedMedia`. The file is read from its path packet by packet, so a large
video costs the memory of its soundtrack at the working rate, never of the file.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np
from scipy import signal

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
    stream.codec_context.thread_type = "AUTO"
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
    """Mono blocks at the source rate, resampled block by block; stop at the sample cap or
    the deadline (both errors)."""
    rate = stream.codec_context.sample_rate or stream.rate
    if not rate:
        raise UnsupportedMedia("the audio stream has no sample rate")
    resampler = _Resampler(rate)
    cap = int(limits.max_seconds * rate)
    parts: list[np.ndarray] = []
    decoded = 0
    for frame in _frames(container, stream):
        mono = _mono(frame)
        decoded += len(mono)
        if decoded > cap:
            raise MediaTooLarge(f"audio runs past the {limits.max_seconds:.0f} s cap")
        if time.monotonic() > deadline:
            raise MediaTooLarge(
                f"decoding took over the {limits.max_decode_seconds:.0f} s budget")
        parts.extend(resampler.push(mono))
    parts.extend(resampler.flush())
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.clip(samples, -1.0, 1.0)


_SCALE = {"s16": 1 / 32768, "s16p": 1 / 32768, "s32": 1 / 2**31, "s32p": 1 / 2**31,
          "u8": 1 / 128, "u8p": 1 / 128}


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """The frame's channels averaged, as float32 in [-1, 1]."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    mono = data.mean(axis=0, dtype=np.float32) if channels > 1 else data[0].astype(np.float32)
    name = frame.format.name
    if name.startswith("u8"):
        mono -= 128
    scaled: np.ndarray = mono * np.float32(_SCALE.get(name, 1.0))
    return scaled


class _Resampler:
    """Polyphase resampling to SAMPLE_RATE in blocks, so the source-rate audio is never held
    whole. Blocks start at multiples of the rate ratio's denominator and overlap by a margin
    wider than the filter, so the joined output equals resampling the whole signal."""

    def __init__(self, rate: int) -> None:
        g = math.gcd(rate, SAMPLE_RATE)
        self.up, self.down = SAMPLE_RATE // g, rate // g
        units = max(1, math.ceil(_FILTER_REACH * rate / self.down))
        self.margin = units * self.down  # source samples, a whole number of ratio periods
        self.block = max(1, round(_BLOCK_SECONDS * rate / self.down)) * self.down
        self.taps = _taps(self.up, self.down)
        self.pending = np.zeros(0, np.float32)
        self.arrived: list[np.ndarray] = []  # frames not joined to `pending` yet
        self.arrived_count = 0
        self.history = np.zeros(0, np.float32)  # the margin before `pending`

    def push(self, mono: np.ndarray) -> list[np.ndarray]:
        self.arrived.append(mono)
        self.arrived_count += len(mono)
        out = []
        if len(self.pending) + self.arrived_count >= self.block + self.margin:
            self._join()
            while len(self.pending) >= self.block + self.margin:
                out.append(self._emit(self.block))
        return out

    def flush(self) -> list[np.ndarray]:
        self._join()
        if not len(self.pending):
            return []
        length = len(self.pending)
        self.pending = np.concatenate([self.pending, np.zeros(self.margin, np.float32)])
        full = self._emit(length)
        return [full[: math.ceil(length * self.up / self.down)]]

    def _join(self) -> None:
        self.pending = np.concatenate([self.pending, *self.arrived])
        self.arrived, self.arrived_count = [], 0

    def _emit(self, length: int) -> np.ndarray:
        """Resample `length` pending samples with the margins around them, keep the middle."""
        if self.up == self.down:
            chunk, self.pending = self.pending[:length], self.pending[length:]
            return chunk
        window = np.concatenate([self.history, self.pending[: length + self.margin]])
        resampled = signal.resample_poly(window, self.up, self.down, window=self.taps)
        start = len(self.history) * self.up // self.down
        body: np.ndarray = resampled[start : start + length * self.up // self.down]
        self.history = self.pending[max(0, length - self.margin) : length]
        self.pending = self.pending[length:]
        return body


@functools.cache
def _taps(up: int, down: int) -> np.ndarray:
    """resample_poly's own anti-aliasing filter, designed once per rate pair."""
    if up == down:
        return np.ones(1)
    reach = 10 * max(up, down)
    taps: np.ndarray = signal.firwin(2 * reach + 1, 1 / max(up, down), window=("kaiser", 5.0))
    return taps


_FILTER_REACH = 0.01
"""Seconds each side that the anti-aliasing filter reaches; the block margins cover it."""
_BLOCK_SECONDS = 10.0


def _frames(container: av.container.InputContainer,
            stream: av.audio.stream.AudioStream) -> Iterator[av.AudioFrame]:
    """Decoded frames of the stream; a corrupt packet mid-file is skipped, as a player would,
    instead of losing everything decoded so far."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue

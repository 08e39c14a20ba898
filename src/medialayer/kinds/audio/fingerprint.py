"""An audio file's fingerprint: its spectrogram peaks, and their compact stored form.

The peaks are kept rather than hashes because both sides derive from them: the catalog hashes a
sparse subset once, a query hashes a denser set at several scales. Stored, a peak takes 8 bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from medialayer.errors import UnsupportedMedia
from medialayer.kinds.audio.decode import DEFAULT_LIMITS, Limits, decode_path, decode_stream
from medialayer.kinds.audio.landmarks import QUERY, Peaks, find_peaks

FORMAT_VERSION = 1
_MAGIC = b"MLA"
_HEADER = struct.Struct("<3sBII")  # magic, version, frames, peaks
_TIME_STEPS = 16  # per frame
_BIN_STEPS = 256  # per frequency bin


@dataclass(frozen=True)
class AudioFingerprint:
    """The peaks of one recording (at the query density, a superset of what the index keeps)."""

    peaks: Peaks

    @property
    def seconds(self) -> float:
        return self.peaks.seconds

    @property
    def silent(self) -> bool:
        return len(self.peaks) == 0


def fingerprint_samples(samples: np.ndarray) -> AudioFingerprint:
    return AudioFingerprint(find_peaks(samples).strongest(QUERY))


def fingerprint_path(path: str | os.PathLike[str],
                     limits: Limits = DEFAULT_LIMITS) -> AudioFingerprint:
    return fingerprint_samples(decode_path(path, limits).samples)


def fingerprint_stream(stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> AudioFingerprint:
    return fingerprint_samples(decode_stream(stream, limits).samples)


def encode(fp: AudioFingerprint) -> bytes:
    p = fp.peaks
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, p.frames, len(p))
    t = np.rint(p.t * _TIME_STEPS).astype("<u4")
    f = np.rint(p.f * _BIN_STEPS).astype("<u2")
    s = p.strength.astype("<f2")
    return bytes(header + t.tobytes() + f.tobytes() + s.tobytes())


def decode(blob: bytes) -> AudioFingerprint:
    try:
        magic, version, frames, n = _HEADER.unpack_from(blob)
    except struct.error as e:
        raise UnsupportedMedia("not an audio fingerprint") from e
    if magic != _MAGIC or version != FORMAT_VERSION or len(blob) != _HEADER.size + 8 * n:
        raise UnsupportedMedia(f"audio fingerprint format {version} is not {FORMAT_VERSION}")
    at = _HEADER.size
    t = np.frombuffer(blob, "<u4", n, at).astype(np.float32) / _TIME_STEPS
    f = np.frombuffer(blob, "<u2", n, at + 4 * n).astype(np.float32) / _BIN_STEPS
    s = np.frombuffer(blob, "<f2", n, at + 6 * n).astype(np.float32)
    return AudioFingerprint(Peaks(t, f, s, frames))

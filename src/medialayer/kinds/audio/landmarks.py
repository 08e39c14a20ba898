"""Spectral landmarks: salient spectrogram peaks, paired and hashed with their time offsets.

The method is Wang's (Shazam) as audfprint implements it, with two changes for robustness:

- Peak positions are interpolated to fractions of a bin and of a frame, so that a query can be
  rescaled in time and frequency before it is hashed (`Scale`): a copy played 3 % faster, or
  slowed without a change of pitch, then hashes like the original at one of a few scales.
- The catalog side keeps a sparse set of the strongest peaks and pairs each with a few partners;
  the query side keeps a denser set and pairs with more partners, so that the pairs of the
  reference are, as far as the signal survives, a subset of the query's.

Peaks are kept only in 300-3500 Hz: a telephone line passes that band and little else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medialayer.kinds.audio.decode import SAMPLE_RATE

N_FFT = 512
HOP = 160
FRAME_SECONDS = HOP / SAMPLE_RATE
BIN_HZ = SAMPLE_RATE / N_FFT
LOW_BIN = int(300 / BIN_HZ)
HIGH_BIN = int(3500 / BIN_HZ) + 1

PEAK_NEIGHBOURHOOD = (9, 13)
"""(frames, bins) a peak must be the maximum of."""
CONTRAST_AREA = (31, 25)
"""(frames, bins) of the local mean a peak's strength is measured against: a level that adapts
to coloured noise and to a music bed's spectrum instead of a global threshold."""
MIN_CONTRAST = 0.5
"""Natural-log magnitude units (about 4 dB) a peak must rise above its surroundings."""
SILENCE = 10 ** (-66 / 20) * N_FFT / 4
"""Magnitude under which a bin counts as silence (-66 dB below a full-scale sine)."""

MAX_DT = 96
"""Frames (about 1.9 s) a partner peak may follow its anchor by."""
MIN_DT = 2
MAX_DF = 63
"""Bins a partner may sit above or below its anchor."""
F1_BITS, DF_BITS, DT_BITS = 8, 7, 7
HASH_BITS = F1_BITS + DF_BITS + DT_BITS


@dataclass(frozen=True)
class Density:
    """How many peaks per second to keep and how many partners each anchor pairs with."""

    peaks_per_second: float
    fanout: int


REFERENCE = Density(peaks_per_second=10.0, fanout=4)
QUERY = Density(peaks_per_second=20.0, fanout=10)


@dataclass(frozen=True)
class Peaks:
    """Spectrogram peaks: frame time and bin (both fractional), strength, sorted by time."""

    t: np.ndarray  # float32 frames
    f: np.ndarray  # float32 bins
    strength: np.ndarray  # float32 contrast
    frames: int  # length of the analysed audio in frames

    def __len__(self) -> int:
        return len(self.t)

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS

    def strongest(self, density: Density) -> Peaks:
        """The strongest `peaks_per_second` of each second: an even density, whatever the
        loudness, so quiet passages keep landmarks and loud ones do not crowd the index."""
        if len(self.t) == 0:
            return self
        per_block = max(1, round(density.peaks_per_second))
        block = (self.t * FRAME_SECONDS).astype(np.int64)
        order = np.lexsort((-self.strength, block))
        starts = np.searchsorted(block[order], block[order], side="left")
        rank = np.arange(len(order)) - starts
        keep = np.sort(order[rank < per_block])
        return Peaks(self.t[keep], self.f[keep], self.strength[keep], self.frames)


@dataclass(frozen=True)
class Scale:
    """A query-side rescaling: query time x `time` and frequency x `freq` lands on the catalog.

    A copy sped up by resampling (tempo and pitch together) by a factor s has time = s and
    freq = 1 / s; a tempo-only change has freq = 1.
    """

    time: float
    freq: float


IDENTITY = Scale(1.0, 1.0)


def query_scales(speeds: tuple[float, ...]) -> tuple[Scale, ...]:
    """The identity, then for every other speed both a resampled and a tempo-only copy."""
    scales = [IDENTITY]
    for s in speeds:
        if s != 1.0:
            scales += [Scale(s, 1.0 / s), Scale(s, 1.0)]
    return tuple(scales)


_WINDOW = np.hanning(N_FFT).astype(np.float32)
_FLOOR = np.float32(SILENCE**2)
_CHUNK = 256
"""Frames transformed at a time: the windowed frames, their spectrum and its logarithm stay in
the CPU's cache instead of passing through memory once per step."""


def spectrogram(samples: np.ndarray) -> np.ndarray:
    """Log magnitude, frames x bins (the 300-3500 Hz band only); silence sits at the floor."""
    import scipy.fft  # here, not at the top: a server whose catalog has no audio never loads SciPy

    if len(samples) < N_FFT:
        return np.zeros((0, HIGH_BIN - LOW_BIN), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float32), N_FFT)[::HOP]
    out = np.empty((len(frames), HIGH_BIN - LOW_BIN), np.float32)
    windowed = np.empty((_CHUNK, N_FFT), np.float32)
    for at in range(0, len(frames), _CHUNK):
        part = frames[at : at + _CHUNK]
        spectrum = scipy.fft.rfft(np.multiply(part, _WINDOW, out=windowed[: len(part)]),
                                  axis=1)[:, LOW_BIN:HIGH_BIN]
        power = out[at : at + _CHUNK]
        np.square(spectrum.real, out=power)
        power += np.square(spectrum.imag)
        np.log(np.maximum(power, _FLOOR, out=power), out=power)
    out *= 0.5
    return out


def find_peaks(samples: np.ndarray) -> Peaks:
    """Local maxima of the log spectrogram that stand out from their surroundings."""
    from scipy import ndimage

    spec = spectrogram(samples)
    if spec.shape[0] < PEAK_NEIGHBOURHOOD[0]:
        empty = np.zeros(0, np.float32)
        return Peaks(empty, empty, empty, frames=spec.shape[0])
    contrast = spec - ndimage.uniform_filter(spec, CONTRAST_AREA, mode="nearest")
    local_max = _running_max(_running_max(spec, PEAK_NEIGHBOURHOOD[0], 0),
                             PEAK_NEIGHBOURHOOD[1], 1)
    is_peak = (spec == local_max) & (contrast > MIN_CONTRAST) & (spec > np.log(SILENCE))
    ti, fi = np.nonzero(is_peak)
    dt = _vertex(spec, ti, fi, axis=0)
    df = _vertex(spec, ti, fi, axis=1)
    return Peaks((ti + dt).astype(np.float32), (fi + LOW_BIN + df).astype(np.float32),
                 contrast[ti, fi].astype(np.float32), spec.shape[0])


def _running_max(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """The maximum over a centred window of odd `width` along `axis`, the edges padded with
    +inf (so that no peak is claimed where part of its neighbourhood is unseen). Maxima of
    doubling spans: a few whole-array passes, where a filter walks element by element."""
    x = np.moveaxis(x, axis, 0)
    half = width // 2
    padded = np.full((len(x) + 2 * half, *x.shape[1:]), np.inf, x.dtype)
    padded[half : half + len(x)] = x
    span, acc = 1, padded
    while 2 * span <= width:
        acc = np.maximum(acc[:-span], acc[span:])  # acc[i] = max(padded[i : i + 2 span])
        span *= 2
    out = np.maximum(acc[: len(x)], acc[width - span : width - span + len(x)])
    return np.moveaxis(out, 0, axis)


def _vertex(spec: np.ndarray, ti: np.ndarray, fi: np.ndarray, axis: int) -> np.ndarray:
    """Offset in (-0.5, 0.5) of the parabola through a peak and its two neighbours on `axis`."""
    idx = ti if axis == 0 else fi
    size = spec.shape[axis]
    inner = (idx > 0) & (idx < size - 1)
    lo = np.where(inner, idx - 1, idx)
    hi = np.where(inner, idx + 1, idx)
    if axis == 0:
        a, b, c = spec[lo, fi], spec[ti, fi], spec[hi, fi]
    else:
        a, b, c = spec[ti, lo], spec[ti, fi], spec[ti, hi]
    curvature = a - 2 * b + c
    safe = np.where(curvature < -1e-6, curvature, -1.0)
    return np.where(inner & (curvature < -1e-6), np.clip(0.5 * (a - c) / safe, -0.5, 0.5), 0.0)


@dataclass(frozen=True)
class Pairs:
    """Anchor-partner pairs of peaks (indices into one `Peaks`)."""

    anchor: np.ndarray
    partner: np.ndarray


def pair_peaks(peaks: Peaks, fanout: int, slack: float = 1.0) -> Pairs:
    """Pair each peak with its `fanout` nearest followers inside the target zone.

    `slack` widens the zone, so that the pairs still fit it after a query-side rescaling.
    """
    n = len(peaks)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return Pairs(empty, empty)
    window = min(n - 1, 4 * fanout + 8)
    anchor = np.repeat(np.arange(n), window)
    partner = anchor + np.tile(np.arange(1, window + 1), n)
    inside = partner < n
    partner = np.minimum(partner, n - 1)
    dt = peaks.t[partner] - peaks.t[anchor]
    df = np.abs(peaks.f[partner] - peaks.f[anchor])
    inside &= (dt >= MIN_DT / slack) & (dt <= MAX_DT * slack) & (df <= MAX_DF * slack)
    inside = inside.reshape(n, window)
    rank = np.cumsum(inside, axis=1)
    keep = (inside & (rank <= fanout)).reshape(-1)
    return Pairs(anchor[keep], partner[keep])


@dataclass(frozen=True)
class Landmarks:
    """Hashes, the anchor time of each (frames, on the catalog's time axis) and the index of
    the query scale it was hashed at."""

    hashes: np.ndarray  # uint32
    times: np.ndarray  # float32 frames
    scales: np.ndarray  # uint8

    @classmethod
    def join(cls, parts: list[Landmarks]) -> Landmarks:
        return cls(np.concatenate([p.hashes for p in parts]),
                   np.concatenate([p.times for p in parts]),
                   np.concatenate([p.scales for p in parts]))


def hash_pairs(peaks: Peaks, pairs: Pairs, scale: Scale = IDENTITY, index: int = 0
               ) -> Landmarks:
    """Hash (anchor bin, bin difference, frame difference) after rescaling the query."""
    t1 = peaks.t[pairs.anchor] * scale.time
    f1 = peaks.f[pairs.anchor] * scale.freq
    df = (peaks.f[pairs.partner] - peaks.f[pairs.anchor]) * scale.freq
    dt = (peaks.t[pairs.partner] - peaks.t[pairs.anchor]) * scale.time
    f1q = np.rint(f1).astype(np.int64)
    dfq = np.rint(df).astype(np.int64)
    dtq = np.rint(dt).astype(np.int64)
    ok = ((dtq >= MIN_DT) & (dtq <= MAX_DT) & (np.abs(dfq) <= MAX_DF)
          & (f1q >= 0) & (f1q < 1 << F1_BITS))
    hashes = ((f1q << (DF_BITS + DT_BITS)) | ((dfq + (1 << (DF_BITS - 1))) << DT_BITS) | dtq)
    return Landmarks(hashes[ok].astype(np.uint32), t1[ok].astype(np.float32),
                     np.full(int(ok.sum()), index, np.uint8))


def reference_landmarks(peaks: Peaks) -> Landmarks:
    """The catalog side: sparse peaks, few partners, no rescaling."""
    sparse = peaks.strongest(REFERENCE)
    return hash_pairs(sparse, pair_peaks(sparse, REFERENCE.fanout))


def query_landmarks(peaks: Peaks, scales: tuple[Scale, ...]) -> Landmarks:
    """The query side: dense peaks, many partners, hashed once per scale."""
    dense = peaks.strongest(QUERY)
    slack = max(max(s.time, 1 / s.time, s.freq, 1 / s.freq) for s in scales)
    pairs = pair_peaks(dense, QUERY.fanout, slack)
    return Landmarks.join([hash_pairs(dense, pairs, scale, i) for i, scale in enumerate(scales)])

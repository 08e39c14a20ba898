"""Audio the tests make: note sequences, noise, and the edits a seller's copy goes through."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
from scipy import signal

RATE = 22050


def melody(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """Random notes (harmonic tones of random pitch and length, with attack and decay) and
    glides: material with clear spectral peaks that differs from seed to seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float64)
    at = 0
    while at < len(out):
        length = int(rng.uniform(0.08, 0.4) * rate)
        t = np.arange(length) / rate
        f0 = 110 * 2 ** rng.uniform(0, 4)
        glide = f0 * (1 + rng.uniform(-0.2, 0.2) * t / t[-1]) if rng.random() < 0.2 else f0
        phase = 2 * np.pi * np.cumsum(np.broadcast_to(glide, t.shape)) / rate
        tone = sum(rng.uniform(0.2, 1) * np.sin(k * phase) / k for k in range(1, 5))
        envelope = np.minimum(1, t / 0.01) * np.exp(-t * rng.uniform(2, 8))
        end = min(len(out), at + length)
        out[at:end] += (tone * envelope)[: end - at]
        at += int(length * rng.uniform(0.5, 1.0))
    return level(out, -20)


def noise(seconds: float, seed: int, colour: str = "white", rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * rate))
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(len(white), 1 / rate), 1.0)
    power = 1.0 if colour == "pink" else 2.0
    return np.fft.irfft(spectrum / freqs ** (power / 2), len(white))


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x**2)) or 1.0
    return x * (10 ** (dbfs / 20) / rms)


def mix(x: np.ndarray, bed: np.ndarray, snr_db: float) -> np.ndarray:
    bed = np.resize(bed, len(x))
    out = x + level(bed, 20 * np.log10(np.sqrt(np.mean(x**2))) - snr_db)
    peak = np.max(np.abs(out))
    return out * (0.9 / peak) if peak > 0.9 else out


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster by resampling: pitch and tempo change together."""
    up = 1000
    return signal.resample_poly(x, up, round(up * factor))


def tempo(x: np.ndarray, factor: float, rate: int = RATE) -> np.ndarray:
    """Play `factor` times faster with the pitch kept (FFmpeg's atempo)."""
    graph = av.filter.Graph()
    src = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=f"1/{rate}")
    stretch = graph.add("atempo", str(factor))
    sink = graph.add("abuffersink")
    src.link_to(stretch)
    stretch.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(x.astype(np.float32)[None, :], format="flt",
                                       layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    parts = []
    while True:
        try:
            parts.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return np.concatenate(parts)


def telephone(x: np.ndarray, rate: int = RATE) -> np.ndarray:
    """300-3400 Hz band-pass, then an 8-bit mu-law round trip."""
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=rate, output="sos")
    y = np.clip(signal.sosfilt(sos, x), -1, 1)
    mu = 255.0
    coded = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) * 127) / 127
    return np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu


def write(path: Path, x: np.ndarray, rate: int = RATE, codec: str | None = None,
          bit_rate: int | None = None) -> Path:
    """Encode with PyAV; the container and codec follow the suffix unless `codec` is given."""
    codecs = {".wav": "pcm_s16le", ".mp3": "libmp3lame", ".ogg": "vorbis", ".flac": "flac",
              ".m4a": "aac", ".opus": "libopus"}
    codec = codec or codecs[path.suffix]
    out_rate = 48000 if codec == "libopus" else rate
    samples = signal.resample_poly(x, out_rate, rate) if out_rate != rate else x
    with av.open(str(path), "w") as container:
        layout = "stereo" if codec == "vorbis" else "mono"  # FFmpeg's own Vorbis encoder
        stream = container.add_stream(codec, rate=out_rate, layout=layout,
                                      options={"strict": "experimental"})
        if bit_rate:
            stream.bit_rate = bit_rate
        _encode_all(container, stream, samples, out_rate)
    return path


def _encode_all(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                x: np.ndarray, rate: int) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    channels = stream.codec_context.layout.nb_channels
    frame_size = stream.codec_context.frame_size or 1024
    for at in range(0, len(pcm), frame_size):
        chunk = np.repeat(pcm[None, at : at + frame_size], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1).copy(), format="s16",
                                           layout=stream.codec_context.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def wav_bytes(x: np.ndarray, rate: int = RATE, layout: str = "mono") -> bytes:
    """`x` in every channel of `layout`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout=layout)
        _encode_all(container, stream, x, rate)
    return buffer.getvalue()


def read_wav(data: bytes) -> np.ndarray:
    """The samples of a mono 16-bit WAV made by `wav_bytes`, in [-1, 1]."""
    with wave.open(io.BytesIO(data)) as w:
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768

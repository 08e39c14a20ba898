"""Synthetic "product demo" videos and the edits sellers make, written with PyAV.

A video is a function of time returning an RGB frame: pan-and-zoom shots over generated
pictures with hard cuts, like the slideshows sellers upload. Edits wrap that function, and
`write` encodes it, so a test can make any copy it needs in a fraction of a second.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

FrameAt = Callable[[float], np.ndarray]


@dataclass(frozen=True)
class Clip:
    frame_at: FrameAt
    duration: float
    size: tuple[int, int]  # width, height


def picture(seed: int, size: tuple[int, int] = (800, 600)) -> np.ndarray:
    """A colourful picture with shapes on a smooth background (RGB, uint8)."""
    rng = np.random.default_rng(seed)
    w, h = size
    canvas = cv2.resize(rng.random((4, 5, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    for _ in range(25):
        colour = [float(c) for c in rng.random(3)]
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(canvas, centre, int(rng.integers(8, h // 5)), colour, -1)
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8)


def slideshow(seed: int, duration: float = 12.0, size: tuple[int, int] = (320, 180)) -> Clip:
    """Pan-and-zoom shots of 2.5-4 s over two pictures, with hard cuts."""
    rng = np.random.default_rng(seed)
    pictures = [picture(seed * 7 + k) for k in range(2)]
    shots = []
    t = 0.0
    while t < duration:
        length = float(rng.uniform(2.5, 4.0))
        shots.append((t, t + length, len(shots) % 2, rng.uniform(0.5, 0.8, 2), rng.random(4)))
        t += length

    def frame_at(t: float) -> np.ndarray:
        start, end, which, zoom, pan = next(s for s in shots if s[0] <= t < s[1])
        u = (t - start) / (end - start)
        img = pictures[which]
        z = zoom[0] + (zoom[1] - zoom[0]) * u
        ph, pw = img.shape[:2]
        w, h = int(pw * z), int(pw * z * size[1] / size[0])
        x = int((pw - w) * (pan[0] + (pan[2] - pan[0]) * u))
        y = int((ph - h) * (pan[1] + (pan[3] - pan[1]) * u))
        return cv2.resize(img[y : y + h, x : x + w], size, interpolation=cv2.INTER_AREA)

    return Clip(frame_at, duration, size)


def trimmed(clip: Clip, start: float, length: float) -> Clip:
    return Clip(lambda t: clip.frame_at(start + t), length, clip.size)


def faster(clip: Clip, speed: float) -> Clip:
    return Clip(lambda t: clip.frame_at(speed * t), clip.duration / speed, clip.size)


def mirrored(clip: Clip) -> Clip:
    return Clip(lambda t: np.ascontiguousarray(clip.frame_at(t)[:, ::-1]), clip.duration,
                clip.size)


def letterboxed(clip: Clip) -> Clip:
    """Padded to a square with black bars above and below."""
    w, h = clip.size
    top = (w - h) // 2

    def frame_at(t: float) -> np.ndarray:
        out = np.zeros((w, w, 3), np.uint8)
        out[top : top + h] = clip.frame_at(t)
        return out

    return Clip(frame_at, clip.duration, (w, w))


def dimmed(clip: Clip, level: float = 0.1, contrast: float = 0.12) -> Clip:
    """A dark, low-contrast version fading towards black at the top left, like a night-sky
    wallpaper: its detail is a few grey levels and its darkest pixels are near a bar's black."""
    w, h = clip.size
    ramp = (np.linspace(0.4, 1.0, h, dtype=np.float32)[:, None, None]
            * np.linspace(0.3, 1.0, w, dtype=np.float32)[None, :, None])

    def frame_at(t: float) -> np.ndarray:
        x = clip.frame_at(t).astype(np.float32) / 255
        return np.clip((level + contrast * x) * ramp * 255, 0, 255).astype(np.uint8)

    return Clip(frame_at, clip.duration, clip.size)


def cropped(clip: Clip, keep: float, fx: float, fy: float) -> Clip:
    """A `keep` x `keep` window at a relative position, scaled back to the original size."""
    w, h = clip.size
    cw, ch = round(w * keep), round(h * keep)
    x, y = round((w - cw) * fx), round((h - ch) * fy)

    def frame_at(t: float) -> np.ndarray:
        window = clip.frame_at(t)[y : y + ch, x : x + cw]
        return cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA)

    return Clip(frame_at, clip.duration, clip.size)


def scaled(clip: Clip, size: tuple[int, int]) -> Clip:
    return Clip(lambda t: cv2.resize(clip.frame_at(t), size, interpolation=cv2.INTER_AREA),
                clip.duration, size)


def clip_of(data: bytes) -> Clip:
    """A video file's frames as a clip (to edit a file a test was given)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 24)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    h, w = frames[0].shape[:2]
    return Clip(lambda t: frames[min(int(t * fps), len(frames) - 1)], len(frames) / fps, (w, h))


def mp4(clip: Clip, fps: int = 24, crf: int = 23) -> bytes:
    """`clip` encoded as an MP4 file's bytes."""
    buf = io.BytesIO()
    _encode(clip, buf, fps, crf, "libx264", "mp4")
    return buf.getvalue()


def write(clip: Clip, path: Path, fps: int = 24, crf: int = 23, codec: str = "libx264",
          container: str | None = None) -> Path:
    """Encode `clip` (even width and height) to `path`."""
    _encode(clip, str(path), fps, crf, codec, container)
    return path


def _encode(clip: Clip, target: str | BinaryIO, fps: int, crf: int, codec: str,
            container: str | None) -> None:
    with av.open(target, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = clip.size
        stream.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "superfast"}
        for k in range(int(clip.duration * fps)):
            frame = av.VideoFrame.from_ndarray(clip.frame_at(k / fps), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)

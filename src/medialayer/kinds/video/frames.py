"""Per-frame signals of a sampled video: index codes and verification thumbnails.

Each sampled frame gets the image kind's 64-bit difference hash (and its mirror image's), taken
on the picture left once the video's letterbox or pillarbox bars are trimmed, plus the hash of
that picture's central 90 % window, which is what a cropped copy shows. Those codes only
propose candidates: 64 bits of a smooth wallpaper are mostly noise, so other views of the same
wallpaper collide with them. What decides is a 32x32 thumbnail of the trimmed picture, compared
pixel by pixel along the aligned timeline (`medialayer.kinds.video.match`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from medialayer.kinds.image import dhash_pair
from medialayer.kinds.video.decode import DEFAULT_LIMITS, Frames, Limits, Sampling, Source, sample

THUMB = 32
"""Side of the stored verification thumbnail (THUMB x THUMB gray bytes per frame)."""
INNER = 0.9
"""Share of the width and height kept by the central window that cropped copies are found by."""
BAR_TOLERANCE = 4
"""Grey levels a bar pixel may stray from the bar's colour, over all frames (coding noise)."""
BAR_SHARE = 0.95
"""Share of a line's pixels that must be bar for the line to be a bar (a caption may sit on it)."""
MIN_PICTURE = 0.1
"""Bars leaving less than this share of the height or width are taken for a still picture."""
CATALOG = Sampling(fps=2.0, keyframes=True)
"""A catalog item keeps its keyframes (at most two a second)."""
QUERY = Sampling(fps=4.0)
"""A query keeps four frames a second and its keyframes."""


@dataclass(frozen=True)
class VideoFingerprint:
    """The sampled frames of one video: times, codes and thumbnails, one row per frame.

    `codes[:, 0]` is the trimmed picture's hash, `codes[:, 1]` its mirror image's and
    `codes[:, 2]` the hash of its central window.
    """

    times: np.ndarray  # float32 (n,)
    codes: np.ndarray  # uint64 (n, 3)
    thumbs: np.ndarray  # uint8 (n, THUMB, THUMB)
    duration: float

    def __len__(self) -> int:
        return len(self.times)


def fingerprint(source: Source, query: bool = False, limits: Limits = DEFAULT_LIMITS
                ) -> VideoFingerprint:
    """A video file (path, bytes or stream) to its fingerprint; see `decode.sample` for the
    errors."""
    return fingerprint_frames(sample(source, QUERY if query else CATALOG, limits))


def fingerprint_frames(frames: Frames) -> VideoFingerprint:
    """Codes and thumbnails of every sampled frame, inside the bars the whole video shares."""
    y0, y1, x0, x1 = video_box(frames.pixels)
    content = frames.pixels[:, y0:y1, x0:x1]
    codes = np.array([_frame_codes(frame) for frame in content], np.uint64).reshape(-1, 3)
    thumbs = np.stack([cv2.resize(frame, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
                       for frame in content])
    return VideoFingerprint(frames.times.astype(np.float32), codes, thumbs, frames.duration)


def video_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """The picture inside the video's bars (y0, y1, x0, x1): the edge rows, then the edge
    columns, that hold one colour in every frame.

    A bar is told from the picture by never changing, not by being dark: a dark, nearly
    featureless picture still shifts under a pan and from shot to shot. So a video and its
    letterboxed or captioned copy are cut to the same picture, whereas a box cut where pixels
    come near the border's colour cuts into a dark picture, by amounts that differ between
    the copies.
    """
    _, h, w = pixels.shape
    hi = pixels.max(axis=0).astype(np.int16)
    lo = pixels.min(axis=0).astype(np.int16)
    ring = np.concatenate([lo[0], lo[-1], lo[:, 0], lo[:, -1]])
    colour = int(np.bincount(ring, minlength=256).argmax())
    still = (hi - lo <= BAR_TOLERANCE) & (np.abs(hi - colour) <= BAR_TOLERANCE)
    y0, y1 = _inside_bars(still.mean(axis=1))
    x0, x1 = _inside_bars(still[y0:y1].mean(axis=0))
    if y1 - y0 < MIN_PICTURE * h or x1 - x0 < MIN_PICTURE * w:
        return 0, h, 0, w
    return y0, y1, x0, x1


def _inside_bars(still_share: np.ndarray) -> tuple[int, int]:
    """The range between the leading and trailing runs of bar lines (of a still, bar-coloured
    share of at least BAR_SHARE), less the line next to each bar: a bar's edge seldom falls on
    a line of the shrunk frame, and the line it falls in, half bar, would be the sharpest
    detail of a smooth picture."""
    picture = np.flatnonzero(still_share < BAR_SHARE)
    if not picture.size:
        return 0, len(still_share)
    start, end = int(picture[0]), int(picture[-1]) + 1
    return start + (start > 0), end - (end < len(still_share))


def _frame_codes(content: np.ndarray) -> tuple[int, int, int]:
    h, w = content.shape
    dy, dx = round(h * (1 - INNER) / 2), round(w * (1 - INNER) / 2)
    code, mirror = dhash_pair(content)
    inner, _ = dhash_pair(content[dy : h - dy, dx : w - dx])
    return code, mirror, inner


_HEADER = struct.Struct("<4sIf")
_MAGIC = b"MLV1"


def encode(fp: VideoFingerprint) -> bytes:
    """Stored form: magic, frame count, duration, then times, codes and thumbnails."""
    return (_HEADER.pack(_MAGIC, len(fp), fp.duration) + fp.times.astype("<f4").tobytes()
            + fp.codes.astype("<u8").tobytes() + fp.thumbs.tobytes())


def decode(blob: bytes) -> VideoFingerprint:
    magic, n, duration = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not a video fingerprint")
    off = _HEADER.size
    times = np.frombuffer(blob, "<f4", n, off).astype(np.float32)
    off += 4 * n
    codes = np.frombuffer(blob, "<u8", 3 * n, off).astype(np.uint64).reshape(n, 3)
    off += 24 * n
    thumbs = np.frombuffer(blob, np.uint8, THUMB * THUMB * n, off).reshape(n, THUMB, THUMB)
    return VideoFingerprint(times, codes, thumbs, duration)

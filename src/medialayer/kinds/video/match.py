"""Time-aligned verification of one query video against one reference video.

Three steps, all on the frames' thumbnails:
1. the view: the query may be mirrored or show a window of the reference (a crop); each view is
   a different resampling of the reference thumbnails, and the one under which the query's
   frames find their best partners is kept for the whole video, so a look-alike cannot pick a
   different window for each frame;
2. the timeline: `t_ref = a * t_query + b`, with `a` near 1 (frame-rate and small speed changes),
   is fitted to the best-matching frame pairs (RANSAC over pairs, then every line scored);
3. the evidence: every reference frame the line maps inside the query is compared with the
   query frame nearest its time; the agreeing ones make the segments and the score.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from medialayer.kinds.base import Segment
from medialayer.kinds.video.frames import THUMB, VideoFingerprint

SPEEDS = (0.8, 1.25)
"""Range of `a` (reference seconds per query second) a copy may play at."""
WINDOWS = (1.0, 0.9)
"""Scales of the reference windows tried as crops (1.0 = the whole picture)."""
NEAR = 0.4
"""Seconds within which a query frame is taken as the partner of a reference frame."""
FAR = 1.5
"""... or, when none is that near (a sparsely sampled query), the nearest within this."""
AGREE = 0.75
"""Detail correlation at which a reference frame counts as shown by the query."""
GAP_COST = 0.15
"""Correlation a pair loses per second between its query frame and the line's time."""
SPEED_COST = 0.2
"""Value a line loses per unit of speed away from 1: ties go to the unchanged speed."""
STRONGEST = 3
"""Views are ranked by their this many strongest frame pairs ..."""
VIEWS_FITTED = 4
"""... and lines are fitted under this many of the best-ranked ones."""
PAIRS = 12
"""Strongest frame pairs lines are drawn through."""
LINE_STEP = np.array([0.005, 0.05])
"""Lines closer than this in (a, b) are one."""
BAND = (0.8, 4.0)
"""Gaussian blurs (thumbnail pixels) whose difference is the detail frames are compared on."""
FLAT = 0.5
"""Frames whose detail has a smaller standard deviation (black, faded) carry no evidence."""


@dataclass(frozen=True)
class Alignment:
    """The best line between two videos and the evidence along it."""

    speed: float  # a
    offset: float  # b
    mirrored: bool
    window: tuple[float, float, float]  # scale, x, y of the reference window the query shows
    agreement: np.ndarray  # float32 per reference frame in the overlap (NaN: no evidence)
    reference_times: np.ndarray  # the times of those frames
    spans: list[Segment]
    query_share: float
    reference_share: float

    @property
    def agreeing(self) -> int:
        return int(np.count_nonzero(self.agreement >= AGREE))

    @property
    def compared(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.agreement)))


def normalized(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm rows of thumbnails, and which rows carry detail."""
    flat = thumbs.reshape(*thumbs.shape[:-2], -1).astype(np.float32)
    flat -= flat.mean(axis=-1, keepdims=True)
    std = np.sqrt((flat * flat).mean(axis=-1))
    flat /= np.maximum(std, 1e-6)[..., None] * np.sqrt(flat.shape[-1])
    return flat, std >= FLAT


def _band(thumbs: np.ndarray) -> np.ndarray:
    """The band of detail that tells copies from look-alikes: without the finest pixels (which
    re-encoding and resampling change) and without the smooth shading (which other parts of the
    same wallpaper share). A difference of Gaussians."""
    t = thumbs.astype(np.float32)
    fine = _per_frame(t, lambda c: cv2.GaussianBlur(c, (0, 0), BAND[0]))
    return np.asarray(fine - _per_frame(t, lambda c: cv2.GaussianBlur(c, (0, 0), BAND[1])))


def _per_frame(thumbs: np.ndarray, op: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a 2-D OpenCV operation to every thumbnail at once, the frames as channels."""
    out = np.empty_like(thumbs)
    for k in range(0, len(thumbs), _CHANNELS):
        chunk = np.ascontiguousarray(thumbs[k : k + _CHANNELS].transpose(1, 2, 0))
        done = op(chunk).reshape(THUMB, THUMB, -1)
        out[k : k + _CHANNELS] = done.transpose(2, 0, 1)
    return out


_CHANNELS = 512  # the most channels OpenCV's filters and warps take


def _views(thumbs: np.ndarray) -> tuple[list[tuple[float, float, float]], np.ndarray]:
    """The reference thumbnails resampled to each window a crop may show (for a scale below 1,
    windows at the corners, edge middles and centre): (views, frames, THUMB, THUMB)."""
    windows = [(scale, fx, fy) for scale in WINDOWS
               for fx, fy in itertools.product(*[(0.0,) if scale == 1.0 else (0.0, 0.5, 1.0)] * 2)]
    warped = np.empty((len(windows), *thumbs.shape), np.float32)
    for k, (scale, fx, fy) in enumerate(windows):
        x0, y0 = fx * THUMB * (1 - scale), fy * THUMB * (1 - scale)
        m = np.array([[scale, 0, x0], [0, scale, y0]], np.float32)
        warped[k] = _per_frame(thumbs, functools.partial(_warp, m=m))
    return windows, warped


def _warp(c: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.warpAffine(c, m, (THUMB, THUMB),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE))


@dataclass(frozen=True)
class Prepared:
    """A query's frames as compared: normalized detail, as shown and mirrored."""

    detail: np.ndarray  # float32 (n, pixels)
    mirror: np.ndarray
    usable: np.ndarray  # bool (n,)


def prepare(query: VideoFingerprint) -> Prepared:
    """Done once per query, whatever the number of candidates it is aligned with."""
    q, usable = normalized(_band(query.thumbs))
    mirror = q.reshape(-1, THUMB, THUMB)[:, :, ::-1].reshape(len(q), -1)
    return Prepared(q, np.ascontiguousarray(mirror), usable)


def similarities(query: Prepared, reference: VideoFingerprint
                 ) -> list[tuple[float, bool, tuple[float, float, float], np.ndarray]]:
    """Correlations of every query frame with every reference frame under each view, the views
    whose strongest pairs are strongest first (with that strength)."""
    windows, warped = _views(_band(reference.thumbs))
    r, r_ok = normalized(warped)  # (views, m, pixels)
    views, m = r.shape[:2]
    n = len(query.detail)
    found = []
    for mirrored, side in ((False, query.detail), (True, query.mirror)):
        s = (r.reshape(views * m, -1) @ side.T).reshape(views, m, n).transpose(0, 2, 1)
        s = np.where(query.usable[None, :, None] & r_ok[:, None, :], s, 0.0)
        flat = s.reshape(views, -1)
        top = min(STRONGEST, flat.shape[1])
        strongest = np.partition(flat, -top, axis=1)[:, -top:].sum(axis=1)
        found += [(float(v), mirrored, w, s[k]) for k, (v, w)
                  in enumerate(zip(strongest, windows, strict=True))]
    found.sort(key=lambda f: -f[0])
    return found


def align(query: VideoFingerprint, reference: VideoFingerprint,
          prepared: Prepared | None = None) -> Alignment | None:
    """The view and line with the most agreeing evidence, or None if the videos share no
    frame. `prepared` is `prepare(query)`, when the caller aligns the query more than once."""
    if len(query) == 0 or len(reference) == 0:
        return None
    prepared = prepared or prepare(query)
    best: tuple[float, bool, tuple[float, float, float], float, float, np.ndarray] | None = None
    for _, mirrored, window, s in similarities(prepared, reference)[:VIEWS_FITTED]:
        lines = _lines(query.times, reference.times, s)
        if not len(lines):
            continue
        values, agreement = _agreement(query.times, reference.times, s, lines)
        k = int(np.argmax(values))
        if best is None or values[k] > best[0]:
            best = (float(values[k]), mirrored, window, float(lines[k, 0]), float(lines[k, 1]),
                    agreement[k])
    if best is None:
        return None
    _, mirrored, window, a, b, agreement = best
    inside = _inside(query.duration, reference.times, a, b)
    times = reference.times[inside]
    agreement = agreement[inside]
    spans = _spans(query, reference, a, b, agreement, times)
    q_len = sum(sp.query_end - sp.query_start for sp in spans)
    r_len = sum(sp.reference_end - sp.reference_start for sp in spans)
    return Alignment(a, b, mirrored, window, agreement, times, spans,
                     min(1.0, q_len / max(query.duration, 1e-6)),
                     min(1.0, r_len / max(reference.duration, 1e-6)))


def _lines(tq: np.ndarray, tr: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Candidate lines (a, b) through the strongest frame pairs: each pair on its own at speed
    1, and every two pairs whose slope is a plausible speed."""
    order = np.argsort(s, axis=None)[::-1][:PAIRS]
    i, j = np.unravel_index(order, s.shape)
    keep = s[i, j] > 0.3
    q, r = tq[i[keep]].astype(np.float64), tr[j[keep]].astype(np.float64)
    dq = q[None, :] - q[:, None]
    dr = r[None, :] - r[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = dr / dq
    ok = (np.abs(dq) >= 1.0) & (slope >= SPEEDS[0]) & (slope <= SPEEDS[1])
    rows, cols = np.nonzero(ok)
    a = slope[rows, cols]
    b = r[rows] - a * q[rows]
    lines = np.concatenate([np.stack([np.ones_like(q), r - q], axis=1),
                            np.stack([a, b], axis=1)])
    steps = np.round(lines / LINE_STEP).astype(np.int64)
    _, first = np.unique(steps[:, 0] * (1 << 32) + steps[:, 1], return_index=True)
    return np.asarray(steps[first] * LINE_STEP)


def _inside(duration: float, tr: np.ndarray, a: float | np.ndarray, b: float | np.ndarray
            ) -> np.ndarray:
    predicted = (tr - b) / a
    return (predicted >= -NEAR) & (predicted <= duration + NEAR)


def _agreement(tq: np.ndarray, tr: np.ndarray, s: np.ndarray, lines: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """For every line: its value, and per reference frame the correlation with the query frame
    that best matches it near the time the line maps it to (NaN outside the query or without
    evidence). A pair further from the line counts a little less, so the line through the
    exact partners wins over its neighbours. A frame's value is how far its agreement goes
    beyond AGREE, not a count: in a slow pan a line a little off can take in one more
    reference frame, just outside an excerpt, at a middling agreement, and would otherwise
    win over the true line and misplace the excerpt's start."""
    a, b = lines[:, 0, None], lines[:, 1, None]
    predicted = (tr[None, :] - b) / a  # (lines, m)
    gap = np.abs(tq[None, :, None] - predicted[:, None, :])  # (lines, n, m)
    nearest = gap.min(axis=1, keepdims=True)
    near = (gap <= NEAR) | (gap <= np.minimum(FAR, nearest))
    near &= (s != 0.0)[None]  # a featureless frame on either side is no evidence either way
    value = np.where(near, s[None] - GAP_COST * gap, -np.inf).max(axis=1)  # (lines, m)
    inside = (predicted >= -NEAR) & (predicted <= tq[-1] + NEAR)
    agreement = np.where(inside & np.isfinite(value), value, np.nan)
    beyond = np.where(agreement >= AGREE, (agreement - AGREE) / (1 - AGREE), 0.0)
    values = np.nansum(beyond, axis=1)
    return values - SPEED_COST * np.abs(lines[:, 0] - 1), agreement.astype(np.float32)


def _spans(query: VideoFingerprint, reference: VideoFingerprint, a: float, b: float,
           agreement: np.ndarray, times: np.ndarray) -> list[Segment]:
    """Runs of agreeing reference frames, each reaching halfway to its disagreeing neighbours
    (or to the ends of the overlap)."""
    lo = max(0.0, b)
    hi = min(reference.duration, a * query.duration + b)
    good = agreement >= AGREE
    spans: list[Segment] = []
    k = 0
    while k < len(times):
        if not good[k]:
            k += 1
            continue
        end = k
        while end + 1 < len(times) and (good[end + 1] or np.isnan(agreement[end + 1])):
            end += 1
        first = k  # frames without evidence neither start nor end a run
        while first > 0 and np.isnan(agreement[first - 1]):
            first -= 1
        start_t = lo if first == 0 else (times[first - 1] + times[first]) / 2
        end_t = hi if end == len(times) - 1 else (times[end] + times[end + 1]) / 2
        run = agreement[k : end + 1]
        score = float(np.nanmean(run))
        spans.append(Segment(round((start_t - b) / a, 2), round((end_t - b) / a, 2),
                          round(float(start_t), 2), round(float(end_t), 2), round(score, 4)))
        k = end + 1
    return spans

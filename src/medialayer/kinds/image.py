"""Images: decode safely, fingerprint in two tiers, and verify candidate matches.

Tier 1 is one 64-bit dHash of the image after its uniform borders are trimmed. It is what the
Hamming index holds for every catalog item (8 bytes), and the query side also hashes its mirror
image and the photo region it finds in a page screenshot. It survives re-encoding, scaling, colour
edits, blur, noise, overlays, padding and flips.

Tier 2 is a small set of ORB keypoints checked geometrically (RANSAC similarity transform). It
survives what no global code can: crops of 30 %, off-centre crops, rotations, and a photo pasted
into a listing page.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import struct
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image, ImageMode, ImageOps

from medialayer.errors import MediaTooLarge, UnsupportedMedia, describe
from medialayer.sniff import IMAGE_FORMATS, sniff

try:  # HEIC/AVIF phone photos; optional so a minimal install still decodes everything else.
    import pillow_heif

    pillow_heif.register_heif_opener()
    getattr(pillow_heif, "register_avif_opener")()  # noqa: B009 - absent from its stubs
except Exception:  # pragma: no cover - depends on the wheel available for the platform
    pass

cv2.setNumThreads(1)

MAX_PIXELS = 80_000_000
"""Images above this pixel count are refused before any pixel is decoded (decompression bombs)."""
MAX_DECODED_BYTES = 256 * 1024 * 1024
"""Images whose decoded pixels (at the size they decode to, bytes per pixel of their mode)
would pass this are refused before decoding: the pixel cap alone let a 616 KB 16-bit RGBA PNG
of 8900x8900 through (docs/security.md)."""
HEAVY_DECODE_BYTES = 32 * 1024 * 1024
"""Decodes above this many bytes hold one of the process's heavy-decode slots."""
_heavy_slots = threading.BoundedSemaphore(1)


def limit_heavy_decodes(slots: int) -> None:
    """How many heavy decodes may run at once in this process (`Settings.heavy_decodes`):
    requests decode in several threads, and a few large images at once multiply the peak."""
    global _heavy_slots
    _heavy_slots = threading.BoundedSemaphore(max(1, slots))

WORK_SIDE = 480
"""Long side, in pixels, at which keypoints are computed: large enough for 70 % crops."""
GLOBAL_SIDE = 128
"""Long side at which the global code is computed, after border trimming."""
ORB_FEATURES = 256
ORB_BYTES = 32
ORB_EDGE = 15
ORB_SCALE = 1.3
ORB_LEVELS = 6
"""Pixels at each border where ORB places no keypoint (its patch would not fit)."""


def open_image(data: bytes, max_pixels: int = MAX_PIXELS, draft_side: int = WORK_SIDE,
               mode: str = "RGB", max_decoded_bytes: int = MAX_DECODED_BYTES) -> Image.Image:
    """Decode bytes to an RGB (or "L") image, refusing anything that is not a well-formed image.

    JPEGs are decoded at reduced scale (draft mode), so a 4000-px photo costs what a 500-px one
    does, and in grayscale when that is all the caller needs. EXIF orientation is applied and
    transparency is flattened on white, as a shopper sees it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _header(data, max_pixels)
            if im.format == "JPEG" and draft_side:  # the long side stays >= draft_side
                scale = draft_side / max(im.size)
                im.draft(mode, (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            nbytes = _decoded_bytes(im, max_decoded_bytes)
            with _heavy_slots if nbytes > HEAVY_DECODE_BYTES else contextlib.nullcontext():
                im.seek(0)
                im.load()
                ImageOps.exif_transpose(im, in_place=True)
                return _flatten(im, mode)
    except (MediaTooLarge, UnsupportedMedia):
        raise
    except Image.DecompressionBombError as e:
        raise MediaTooLarge(describe(e)) from e
    except Exception as e:  # Pillow raises many types for hostile input; all mean "undecodable".
        raise UnsupportedMedia(f"cannot decode image: {describe(e)}") from e


def _header(data: bytes, max_pixels: int) -> Image.Image:
    """A lazily opened image whose real type and pixel count have been checked; nothing decoded."""
    kind = sniff(data[:64])
    if kind not in IMAGE_FORMATS:
        raise UnsupportedMedia(f"not a supported image (detected: {kind or 'unknown'})")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise MediaTooLarge(str(e)) from e
    except Exception as e:
        raise UnsupportedMedia(f"cannot decode image: {describe(e)}") from e
    if im.width * im.height > max_pixels:
        raise MediaTooLarge(f"image is {im.width}x{im.height} pixels, over the cap of {max_pixels}")
    return im


def _decoded_bytes(im: Image.Image, cap: int) -> int:
    """The bytes `im` will decode to (its size after any draft), or MediaTooLarge over `cap`."""
    spec = ImageMode.getmode(im.mode)
    nbytes = im.width * im.height * len(spec.bands) * int(spec.typestr[-1])
    if nbytes > cap:
        raise MediaTooLarge(f"image is {im.width}x{im.height} {im.mode} pixels: {nbytes} bytes "
                            f"decoded, over the cap of {cap}")
    return nbytes


def _flatten(im: Image.Image, mode: str) -> Image.Image:
    """Transparent pixels become white: a product shot on a transparent canvas looks white."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        canvas.alpha_composite(im)
        im = canvas
    return im if im.mode == mode else im.convert(mode)


def work_gray(im: Image.Image, side: int = WORK_SIDE) -> np.ndarray:
    """Grayscale array with the long side at most `side` px (area-averaged, so no aliasing)."""
    g = im if im.mode == "L" else im.convert("L")
    scale = side / max(g.size)
    if scale < 1:
        g = g.resize((max(1, round(g.width * scale)), max(1, round(g.height * scale))),
                     Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(g)


def content_box(gray: np.ndarray, tol: int = 12,
                min_frac: float = 0.01) -> tuple[int, int, int, int]:
    """The box (y0, y1, x0, x1) left after trimming uniform borders, padding and letterboxing.

    The background is the most common value of the outer frame; it only counts as a border if
    most of the frame is close to it. Rows and columns are trimmed while nearly all their pixels
    match it.
    """
    h, w = gray.shape
    frame = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    bg = int(np.bincount(frame, minlength=256).argmax())
    if np.count_nonzero(np.abs(frame.astype(np.int16) - bg) <= tol) < 0.6 * frame.size:
        return 0, h, 0, w
    diff = np.abs(gray.astype(np.int16) - bg) > tol
    rows = np.flatnonzero(np.count_nonzero(diff, axis=1) > min_frac * w)
    cols = np.flatnonzero(np.count_nonzero(diff, axis=0) > min_frac * h)
    if rows.size == 0 or cols.size == 0:
        return 0, h, 0, w
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (y1 - y0) < 0.1 * h or (x1 - x0) < 0.1 * w:
        return 0, h, 0, w
    return int(y0), int(y1), int(x0), int(x1)


def dhash_pair(gray: np.ndarray) -> tuple[int, int]:
    """64-bit difference hashes of an image and of its mirror image, from one 9x8 thumbnail.

    Each of the 8 rows gives 8 left-right brightness comparisons; the mirror image's comparisons
    are the same pixels compared the other way round, read right to left.
    """
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    right_brighter = small[:, 1:] > small[:, :-1]
    left_brighter = (small[:, :-1] > small[:, 1:])[:, ::-1]
    packed = np.packbits(np.concatenate([right_brighter.ravel(), left_brighter.ravel()]))
    code, mirror = packed.view(">u8")
    return int(code), int(mirror)


def code_information(code: int) -> int:
    """How far a code is from the codes of featureless images: the bits that would have to
    change for each row's comparisons to all agree, or for all rows to be the same. A smooth
    gradient's code is all ones or all zeros row by row, and an image that only changes from
    left to right repeats one row: every such image running the same way (or, mirrored, the
    other way) shares the code, so these codes match unrelated images by chance."""
    rows = [(code >> shift & 0xFF).bit_count() for shift in range(0, 64, 8)]
    columns = [sum(code >> (shift + bit) & 1 for shift in range(0, 64, 8)) for bit in range(8)]
    return min(sum(min(n, 8 - n) for n in rows), sum(min(n, 8 - n) for n in columns))


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash (the seed product's code) of a grayscale image."""
    return dhash_pair(gray)[0]


def trimmed_codes(gray: np.ndarray) -> list[int]:
    """dHash of the content left after border trimming, and of its mirror image."""
    small = shrink(gray, GLOBAL_SIDE)
    y0, y1, x0, x1 = content_box(small)
    return list(dhash_pair(small[y0:y1, x0:x1]))


def shrink(gray: np.ndarray, side: int) -> np.ndarray:
    """Downscale so the long side is at most `side` (never upscales), without aliasing.

    Down to half size, bilinear interpolation already reads every source pixel (10x faster than
    OpenCV's area averaging at such ratios); further down, pixels are area-averaged.
    """
    h, w = gray.shape
    scale = side / max(h, w)
    if scale >= 1:
        return gray
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
    return cv2.resize(gray, size, interpolation=method)


BLOB_TOLERANCE = 12
"""Grey levels from the background that are still background, for pages and photo blobs."""


def photo_region(gray: np.ndarray, tol: int = BLOB_TOLERANCE) -> tuple[int, int, int, int] | None:
    """The box of the largest compact non-background blob: the photo in a listing screenshot.

    Page text and buttons are many small or thin blobs; the photo is one large, roughly square
    one. Returns None when the page has no uniform background or the blob is the whole image.
    """
    found = _largest_blob(gray, tol)
    return None if found is None else found[0]


def page_region(gray: np.ndarray, tol: int = BLOB_TOLERANCE) -> tuple[int, int, int, int] | None:
    """The photo of a listing page, or None for anything that is not a page.

    A page is a solid photo region with sharp chrome around it (header, text, buttons: other
    foreground with crisp edges outside the photo), and the photo is not most of the image. A
    product shot on a white canvas has a blob too but nothing around it, a blurred or
    gradient image has blobs but no crisp edges, line art has outlines but no solid blob: all
    stay images matched as a whole.
    """
    return _page_of(_largest_blob(gray, tol))


def _page_of(found: tuple[Box, _Blob] | None) -> Box | None:
    """The blob's box if what surrounds it makes the image a page (`page_region`)."""
    if found is None:
        return None
    box, blob = found
    return box if (blob.chrome_edges >= PAGE_CHROME_EDGES and blob.chrome_parts >= PAGE_PARTS
                   and blob.fill >= PAGE_PHOTO_FILL
                   and blob.share <= PAGE_PHOTO_SHARE and blob.flat >= PAGE_FLAT
                   ) else None


PAGE_CHROME_EDGES = 0.003
"""Share of a page's pixels (at 256 px) that must be crisp edges of foreground outside its
photo: text and buttons have them, soft blobs of a blurred photo do not."""
PAGE_EDGE = 300
"""Sobel magnitude (3x3, 8-bit pixels) of a crisp edge: text on a flat page reaches it even
after downscaling and JPEG; a blurred step does not."""
PAGE_PARTS = 4
"""Separate pieces of foreground besides the photo that a page has at least (lines of text,
buttons, bars): a product cut out on white with a few loose parts has fewer."""
PAGE_FLAT = 0.6
"""Share of a page's background pixels within 3 levels of its colour: a page is flat where
a blurred photo or a gradient only drifts slowly (its "background" spreads over the whole
tolerance)."""
PAGE_PHOTO_FILL = 0.15
"""Share of the photo region's box that must be foreground: a pasted photo is solid (a
product cut out on white less so), the outline of a drawn box is not."""
PAGE_PHOTO_SHARE = 0.7
"""A photo region covering more of the image than this is the image itself, not a page."""


BLOB_TRIES = 4
"""Largest blobs tried, in order of size, for the photo: a header bar merged with a banner
below it can outgrow it."""


def _bar(x: int, y: int, width: int, height: int, shape: tuple[int, ...]) -> bool:
    """Whether a blob spans the page from side to side at its top or bottom: a header or
    footer bar (with whatever merged into it), not a pasted photo."""
    return x == 0 and x + width >= shape[1] and (y == 0 or y + height >= shape[0])


@dataclass(frozen=True)
class _Blob:
    share: float  # of the image, its box
    fill: float  # of its box, foreground
    chrome_edges: float  # of the image, crisp foreground edges outside its box
    flat: float  # of the background pixels, those within 3 levels of its colour
    chrome_parts: int  # other foreground blobs


def _largest_blob(gray: np.ndarray, tol: int) -> tuple[tuple[int, int, int, int], _Blob] | None:
    """The box of the largest compact foreground blob on a uniform background, and what
    surrounds it; None without a uniform background or such a blob."""
    h, w = gray.shape
    scale = min(1.0, 256 / max(h, w))
    small = shrink(gray, 256)
    frame = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]]).astype(np.int16)
    bg = int(np.median(frame))
    if np.mean(np.abs(frame - bg) <= tol) < 0.5:
        return None
    difference = np.abs(small.astype(np.int16) - bg)
    foreground = difference > tol
    mask = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_CLOSE,
                            np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    bw, bh = stats[1:, cv2.CC_STAT_WIDTH].astype(float), stats[1:, cv2.CC_STAT_HEIGHT].astype(float)
    area = np.where(np.maximum(bw / bh, bh / bw) <= 5, bw * bh, 0)
    total = small.shape[0] * small.shape[1]
    for best in np.argsort(-area, kind="stable")[:BLOB_TRIES]:
        if not 0.04 * total <= area[best] <= 0.9 * total:
            return None
        x, y, bx, by = (int(v) for v in stats[1 + best, :4])
        if not _bar(x, y, bx, by, small.shape):
            break
    else:
        return None
    edges = np.hypot(cv2.Sobel(small, cv2.CV_32F, 1, 0), cv2.Sobel(small, cv2.CV_32F, 0, 1))
    crisp = edges >= PAGE_EDGE
    crisp[y:y + by, x:x + bx] = False
    box = (int(y / scale), min(h, int((y + by) / scale)),
           int(x / scale), min(w, int((x + bx) / scale)))
    return box, _Blob(share=float(area[best]) / total,
                      fill=float(np.count_nonzero(foreground[y:y + by, x:x + bx])) / (bx * by),
                      chrome_edges=float(np.count_nonzero(crisp)) / total,
                      flat=float(np.mean(difference[~foreground] <= 3)),
                      chrome_parts=int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= 4)) - 1)


_ORB = threading.local()
"""One ORB detector per thread: OpenCV algorithm objects are not safe to share between
threads, and the service fingerprints on several request threads at once."""


def _orb(features: int = ORB_FEATURES) -> cv2.ORB:
    detectors: dict[int, cv2.ORB] = _ORB.__dict__.setdefault("detectors", {})
    orb = detectors.get(features)
    if orb is None:
        orb = cv2.ORB_create(  # type: ignore[attr-defined]
            nfeatures=features, scaleFactor=ORB_SCALE, nlevels=ORB_LEVELS, edgeThreshold=ORB_EDGE,
            patchSize=31, fastThreshold=10)
        detectors[features] = orb
    return orb


def _positions(keypoints: Sequence[cv2.KeyPoint]) -> np.ndarray:
    """Keypoints' positions, (n, 2) float32, converted by OpenCV in one call: reading `pt`
    builds a Python tuple per keypoint, which counts when there are thousands."""
    return np.asarray(cv2.KeyPoint.convert(keypoints), np.float32).reshape(-1, 2)


Corners = tuple[cv2.KeyPoint, ...]


def _orb_view(gray: np.ndarray, mirror_of: Corners | None = None) -> tuple[Features, Corners]:
    """ORB keypoints at WORK_SIDE (coordinates in pixels of that scale, 32-byte descriptors)
    and the keypoints behind them; with `mirror_of` (the keypoints of `gray`'s own view),
    those of its mirror image instead.

    FAST and the Harris response are symmetric, so ORB finds the mirror images of the same
    corners in a mirrored image: only their descriptors need computing there, each at the
    mirrored place with the mirrored orientation.

    An image (or a region) too thin to hold a keypoint away from its borders has none: ORB
    could not place one anyway, and its pyramid asserts on sides that shrink to nothing, so a
    1000x2 banner is matched by its global code alone.
    """
    small = shrink(gray, WORK_SIDE)
    if min(small.shape) <= 2 * ORB_EDGE:
        return Features.empty(small.shape), ()
    if mirror_of is None:
        keypoints, descriptors = _orb().detectAndCompute(small, None)
    else:
        right = small.shape[1] - 1
        keypoints, descriptors = _orb().compute(np.ascontiguousarray(small[:, ::-1]), [
            cv2.KeyPoint(right - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0,
                         k.response, k.octave) for k in mirror_of])
    if descriptors is None or not keypoints:
        return Features.empty(small.shape), ()
    return (Features(_positions(keypoints), descriptors, (small.shape[1], small.shape[0])),
            tuple(keypoints))


Box = tuple[int, int, int, int]
"""(y0, y1, x0, x1) in pixels, as `content_box` gives it."""
NormBox = tuple[float, float, float, float]
"""(x0, y0, x1, y1) as shares of the image's width and height: what explanations report."""


@dataclass(frozen=True)
class Features:
    """Keypoints of one view of an image: positions and their binary descriptors.

    Positions are in the pixels of the image's work frame (long side WORK_SIDE), `size` wide
    and high, whatever part of the image the keypoints were computed on; a mirrored view's
    x runs right to left, so a similarity transform still fits a flipped copy.
    """

    points: np.ndarray  # float32 (n, 2)
    descriptors: np.ndarray  # uint8 (n, 32)
    size: tuple[int, int] = (0, 0)  # (width, height) of the work frame
    mirrored: bool = False

    @classmethod
    def empty(cls, shape: tuple[int, ...] = (0, 0)) -> Features:
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, ORB_BYTES), np.uint8),
                   (shape[1], shape[0]))

    def __len__(self) -> int:
        return len(self.descriptors)

    def share(self, corners: np.ndarray) -> NormBox | None:
        """The part of this view's frame inside the polygon `corners` (pixels of the frame),
        as a box of shares of the image, unmirrored; None if they do not meet."""
        w, h = self.size
        if min(w, h) <= 0:
            return None
        low, high = corners.min(axis=0), corners.max(axis=0)
        x0, y0 = max(0.0, float(low[0])), max(0.0, float(low[1]))
        x1, y1 = min(float(w), float(high[0])), min(float(h), float(high[1]))
        if x1 <= x0 or y1 <= y0:
            return None
        if self.mirrored:
            x0, x1 = w - x1, w - x0
        return _clipped((x0 / w, y0 / h, x1 / w, y1 / h))

    def corners(self) -> np.ndarray:
        w, h = self.size
        return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def _clipped(box: NormBox) -> NormBox:
    x0, y0, x1, y1 = (round(min(1.0, max(0.0, v)), 4) for v in box)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class ImageFingerprint:
    """The stored fingerprint (code + features) and, for queries, the extra views to try.

    The code and the features describe the image's content: on a listing page, the photo
    region only (`page`), so two pages that share a template share nothing of what is
    matched; elsewhere the whole image, borders trimmed (`box`). A query's costlier views
    (keypoints of its mirror image) are computed only if asked for, by `expanded`: most
    searches are settled by the main view, and computing them first would double the cost of
    every search.
    """

    code: int
    features: Features
    query_codes: tuple[int, ...] = ()
    query_views: tuple[Features, ...] = ()
    more: Callable[[], ImageFingerprint] | None = field(default=None, compare=False, repr=False)
    box: Box | None = None  # the content, in the work frame of `features.size`
    page: bool = False

    @property
    def codes(self) -> list[int]:
        return [self.code, *self.query_codes]

    @property
    def views(self) -> list[Features]:
        return [self.features, *self.query_views]

    def expanded(self) -> ImageFingerprint:
        """The same query with every view: its codes and views start with this one's."""
        return self if self.more is None else self.more()

    def content(self) -> NormBox:
        """The content box as shares of the image: all of it when unknown."""
        w, h = self.features.size
        if self.box is None or min(w, h) <= 0:
            return 0.0, 0.0, 1.0, 1.0
        y0, y1, x0, x1 = self.box
        return _clipped((x0 / w, y0 / h, x1 / w, y1 / h))


def fingerprint_image(im: Image.Image, query: bool = False, local: bool = True) -> ImageFingerprint:
    """Both tiers (and the mirror code) for a decoded image; see `fingerprint_gray`."""
    return fingerprint_gray(work_gray(im, 2 * (WORK_SIDE if local else GLOBAL_SIDE)), query, local)


def fingerprint_gray(gray: np.ndarray, query: bool = False, local: bool = True
                     ) -> ImageFingerprint:
    """Both tiers (and the mirror code) of the image's content.

    On a listing page (`page_region`) the content is the photo: its code, and keypoints
    computed on it alone, so the page's text does not crowd them out. A query can also get
    keypoints of its mirror image (`ImageFingerprint.expanded`), which only a query needs, so
    they are not stored.
    """
    work = shrink(gray, WORK_SIDE)
    blob = _largest_blob(work, BLOB_TOLERANCE)  # the page's photo, or a query's last view
    region = _page_of(blob)
    if region is None:
        small = shrink(work, GLOBAL_SIDE)
        y0, y1, x0, x1 = content_box(small)
        code, mirror = dhash_pair(small[y0:y1, x0:x1])
        f = work.shape[0] / small.shape[0]
        box = (round(y0 * f), round(y1 * f), round(x0 * f), round(x1 * f))
    else:
        box = region
        code, mirror = trimmed_codes(_in_gray(gray, work, region))
    whole = (0, work.shape[0], 0, work.shape[1])
    features, corners = (_region_features(gray, work, region or whole, False) if local
                         else (Features.empty(work.shape), ()))
    fp = ImageFingerprint(code, features, (mirror,), box=box, page=region is not None)
    if not query or not local:
        return fp
    def expand() -> ImageFingerprint:
        codes, views = _more_views(gray, work, fp, corners, None if blob is None else blob[0])
        return replace(fp, query_codes=(*fp.query_codes, *codes), query_views=views, more=None)

    return replace(fp, more=functools.cache(expand))


def _more_views(gray: np.ndarray, work: np.ndarray, fp: ImageFingerprint, corners: Corners,
                photo: Box | None) -> tuple[tuple[int, ...], tuple[Features, ...]]:
    """The query's costlier codes and views: keypoints of its mirror image (ORB is not
    mirror-invariant, so a flipped and cropped copy needs them); when large text covers it,
    a dense view of keypoints off the text and spread over the whole image (the letters of
    a watermark take the strongest keypoints, the photo's own are weaker and lie between
    them); and on
    something that is not quite a page, the largest photo-like blob found on a plain
    background (both tiers, `photo`: `photo_region` of the work image, found with the page
    test), as a last resort for screenshots `page_region` does not accept."""
    box = fp.box if fp.page and fp.box is not None else (0, work.shape[0], 0, work.shape[1])
    codes: list[int] = []
    views = [_region_features(gray, work, box, True, corners)[0]]
    y0, y1, x0, x1 = box
    mask = text_mask(work[y0:y1, x0:x1])
    if mask is not None:
        views.append(_text_view(work, box, mask))
    blob = None if fp.page else photo
    if blob is not None:
        codes += trimmed_codes(_in_gray(gray, work, blob))
        views.append(_region_features(gray, work, blob, False)[0])
    return tuple(codes), tuple(views)


TEXT_KERNEL = 13
"""Strokes thinner than this (pixels at WORK_SIDE) stand out of a top-hat / black-hat: the
letters of large overlaid text, and little else on a low-texture image."""
TEXT_CONTRAST = 18
TEXT_WINDOW = 21
"""Side of the neighbourhood (pixels at WORK_SIDE) whose share of strokes TEXT_DENSITY bounds."""
TEXT_DENSITY = 0.18
"""Share of a neighbourhood that must be strokes for it to be text; a lone line of a drawing
is sparser."""
TEXT_SHARE = 0.05
"""Text covering less of the image than this is left alone: it cannot crowd keypoints out."""


def text_mask(gray: np.ndarray) -> np.ndarray | None:
    """Where large overlaid text is (uint8, 255 off it), or None when there is little."""
    if min(gray.shape) < 2 * TEXT_KERNEL:
        return None
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (TEXT_KERNEL, TEXT_KERNEL))
    strokes = np.maximum(cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel),
                         cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)) > TEXT_CONTRAST
    near = cv2.boxFilter(strokes.astype(np.uint8), cv2.CV_16U, (TEXT_WINDOW, TEXT_WINDOW),
                         normalize=False)  # stroke pixels counted in integers: no float blur
    dense = near > TEXT_DENSITY * TEXT_WINDOW ** 2
    if np.count_nonzero(dense) < TEXT_SHARE * dense.size:
        return None
    text = cv2.dilate(dense.astype(np.uint8), np.ones((7, 7), np.uint8))
    return ((1 - text) * 255).astype(np.uint8)


DENSE_FEATURES = 1000
"""Keypoints of a query's dense view, when large text covers it. Only the query has them; the
stored image keeps its ORB_FEATURES, which on a photo without text are the ones the dense
view finds again."""
DENSE_CANDIDATES = 20_000
"""Corners ORB keeps for the dense view to choose from: more than FAST finds on a work-size
image, so none is dropped. ORB would otherwise keep the strongest of each pyramid level,
and on the fine levels the letters' corners would push out all of the photo's."""
DENSE_GRID = 8
DENSE_SPREAD = 0.8
"""Share of the dense view's keypoints given out evenly over the grid's cells."""


def _text_view(work: np.ndarray, box: Box, mask: np.ndarray) -> Features:
    """The view of a query that large text covers, from one detection of every corner in
    the content box: the ORB_FEATURES strongest off the text `mask` (shared out over the
    pyramid levels, `_per_level`) and DENSE_FEATURES spread over the box (`_spread`), in the
    work frame."""
    y0, y1, x0, x1 = box
    pixels = np.ascontiguousarray(work[y0:y1, x0:x1])
    if min(pixels.shape) <= 2 * ORB_EDGE:
        return Features.empty(work.shape)
    orb = _orb(DENSE_CANDIDATES)
    found = orb.detect(pixels, None)
    if not found:
        return Features.empty(work.shape)
    where = _positions(found)
    strength = np.array([k.response for k in found], np.float32)
    strongest = np.argsort(-strength, kind="stable")
    inside = where[strongest].astype(np.int64)
    off_text = _per_level(strongest[mask[inside[:, 1], inside[:, 0]] > 0],
                          np.array([k.octave for k in found]), ORB_FEATURES)
    chosen = np.union1d(off_text, _spread(where, strength, strongest, pixels.shape))
    keypoints, descriptors = orb.compute(pixels, [found[i] for i in chosen])
    if descriptors is None or not keypoints:
        return Features.empty(work.shape)
    return Features(_positions(keypoints) + np.array([x0, y0], np.float32), descriptors,
                    (work.shape[1], work.shape[0]))


def _per_level(ranked: np.ndarray, level: np.ndarray, total: int) -> np.ndarray:
    """Of the corners `ranked` (indexes, strongest first), the strongest of each pyramid
    level up to its share of `total`, as ORB shares its budget out: a blurred photo's corners
    are on the coarse levels, and the strongest overall would all be fine ones."""
    shares = ORB_SCALE ** -np.arange(ORB_LEVELS)
    quota = np.round(total * shares / shares.sum()).astype(np.int64)
    of = level[ranked]
    return np.concatenate([ranked[of == i][:quota[i]] for i in range(ORB_LEVELS)])


def _spread(where: np.ndarray, strength: np.ndarray, strongest: np.ndarray,
            shape: tuple[int, ...]) -> np.ndarray:
    """Up to DENSE_FEATURES of the corners at `where` (indexes), spread over an image of
    `shape`: most of them the strongest of each cell of a DENSE_GRID x DENSE_GRID grid, the
    rest the strongest left anywhere (`strongest`: all indexes, strongest first).

    ORB keeps the strongest corners of the whole image, and the outlines of large letters
    are stronger than anything in a soft photo, so they would take the whole budget; no
    letters fill every cell, so the photo keeps its own corners wherever it shows between
    them, whatever the font, outline or layout.
    """
    h, w = shape
    column = np.minimum((where[:, 0] * DENSE_GRID / w).astype(np.int64), DENSE_GRID - 1)
    row = np.minimum((where[:, 1] * DENSE_GRID / h).astype(np.int64), DENSE_GRID - 1)
    cell = row * DENSE_GRID + column
    in_cell = cell.astype(np.uint8)[strongest]  # small keys: numpy's stable sort is a radix sort
    order = strongest[np.argsort(in_cell, kind="stable")]  # by cell, strongest first
    first = np.searchsorted(cell[order], cell[order])
    per_cell = max(1, round(DENSE_SPREAD * DENSE_FEATURES / DENSE_GRID ** 2))
    even = order[np.arange(len(order)) - first < per_cell]
    taken = np.zeros(len(where), bool)
    taken[even] = True
    rest = strongest[~taken[strongest]]
    return np.concatenate([even, rest[:max(0, DENSE_FEATURES - len(even))]])


def _in_gray(gray: np.ndarray, work: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` (work frame) in the larger `gray`."""
    fy, fx = gray.shape[0] / work.shape[0], gray.shape[1] / work.shape[1]
    y0, y1, x0, x1 = box
    return gray[round(y0 * fy):round(y1 * fy), round(x0 * fx):round(x1 * fx)]


def _region_features(gray: np.ndarray, work: np.ndarray, box: Box, mirrored: bool,
                     corners: Corners | None = None) -> tuple[Features, Corners]:
    """Keypoints of the content box alone (mirrored: of its mirror image, at the mirrored
    `corners` of its own view when given), positioned in the work frame; and the keypoints
    behind them."""
    h, w = work.shape
    y0, y1, x0, x1 = box
    pixels = work if box == (0, h, 0, w) else _in_gray(gray, work, box)
    if mirrored and corners is not None:
        view, found = _orb_view(pixels, corners)
    else:
        view, found = _orb_view(np.ascontiguousarray(pixels[:, ::-1]) if mirrored else pixels)
    if len(view) == 0:
        return Features.empty(work.shape), ()
    vw, vh = view.size
    points = view.points.copy()
    if mirrored:
        points[:, 0] = vw - points[:, 0]
    if pixels is not work:
        points *= np.array([(x1 - x0) / vw, (y1 - y0) / vh], np.float32)
        points += np.array([x0, y0], np.float32)
    if mirrored:
        points[:, 0] = w - points[:, 0]
    return Features(points, view.descriptors, (w, h), mirrored), found


def fingerprint_bytes(data: bytes, query: bool = False, local: bool = True) -> ImageFingerprint:
    """File bytes to fingerprint; the global-only path decodes JPEGs at 1/8 scale."""
    side = WORK_SIDE if local else GLOBAL_SIDE // 2
    return fingerprint_gray(decode_gray(data, side), query=query, local=local)


DECODE_SLACK = 0.9
"""A JPEG is decoded at half (quarter, eighth) scale if that leaves 90 % of the wanted side: a
922-px photo decodes at 461 px in a third of the time, and keypoints barely notice."""
_REDUCED_GRAY = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                 (2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (1, cv2.IMREAD_GRAYSCALE))


def decode_gray(data: bytes, side: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Grayscale pixels, long side at least `side` (less DECODE_SLACK) where the file has it
    and at most 2x that.

    JPEGs up to their end-of-image marker (bytes after it are ignored) take OpenCV's
    reduced-scale grayscale decode, about 10 % faster than Pillow's draft mode for the same
    pixels; OpenCV applies EXIF orientation too. Anything else, including JPEGs with no end
    marker, goes through Pillow's stricter `open_image`.
    """
    body = _jpeg_body(data) if sniff(data[:64]) == "jpeg" else None
    if body is not None:
        w, h = _header(body, max_pixels).size
        scale, flag = next((scale, f) for scale, f in _REDUCED_GRAY
                           if max(w, h) >= DECODE_SLACK * side * scale or scale == 1)
        gray = cv2.imdecode(np.frombuffer(body, np.uint8), flag)
        if gray is not None:
            _refuse_cut_short(body, gray, scale)
            return shrink(gray, 2 * side)
    return work_gray(open_image(data, max_pixels, draft_side=side, mode="L"), 2 * side)


def _jpeg_body(data: bytes) -> bytes | None:
    """The JPEG up to and including the end-of-image marker after its first scan, or None.

    Segments before the scan are skipped by their lengths (an EXIF thumbnail has an end
    marker of its own); inside scans a 0xFF byte is always followed by 0x00 or a marker, so
    the first FF D9 after the first scan is the image's end.
    """
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:
            end = data.find(b"\xff\xd9", i)
            return None if end < 0 else data[: end + 2]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 1 if marker == 0xFF else 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


_NOT_A_MARKER = b"\x00" * 64
"""Scan data that is not a marker: ends a complete scan's last block, extends a cut one."""


def _refuse_cut_short(body: bytes, gray: np.ndarray, scale: int) -> None:
    """UnsupportedMedia if a single-scan JPEG's data stops before its last block.

    libjpeg (in OpenCV and Pillow alike) decodes the blocks after an early end marker as flat
    copies of the last one, with a warning nobody sees. So when a corner of the picture is
    flat (where the last block lands, whatever the orientation), the scan is decoded again by
    Pillow with its end marker replaced by non-marker bytes: a complete scan ends all the same,
    a cut one runs out of data, which Pillow reports. Progressive JPEGs need their end marker
    to be decoded at all and are not checked (docs/api.md).
    """
    k = max(2, 8 // scale)  # one 8x8 block, or 2x2 blocks at 1/8 scale
    corners = (gray[:k, :k], gray[:k, -k:], gray[-k:, :k], gray[-k:, -k:])
    if body.count(b"\xff\xda") != 1 or not any(c.min() == c.max() for c in corners):
        return
    try:
        im = Image.open(io.BytesIO(body[:-2] + _NOT_A_MARKER))
        im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    except Exception as e:  # any failure here means the scan is not whole
        raise UnsupportedMedia("truncated JPEG: its data ends before its last block (an "
                               f"end-of-image marker follows a partial file): {describe(e)}"
                               ) from e


_HEADER = struct.Struct("<4sQQH")
_MAGIC = b"MLI2"
_CONTENT = struct.Struct("<HHHHHH?")


def encode(fp: ImageFingerprint) -> bytes:
    """Stored form: magic, code, mirror code, point count, the work frame's size, the content
    box and whether it is a page's photo, float16 points, raw descriptors.

    The mirror code costs 8 bytes and lets a stored item search the catalog for its flipped
    copies (clusters) without its file; the frame and box (13 bytes) let a match say where it
    lies.
    """
    n = len(fp.features)
    mirror = fp.query_codes[0] if fp.query_codes else fp.code
    w, h = fp.features.size
    y0, y1, x0, x1 = fp.box if fp.box is not None else (0, h, 0, w)
    return (_HEADER.pack(_MAGIC, fp.code, mirror, n)
            + _CONTENT.pack(w, h, y0, y1, x0, x1, fp.page)
            + fp.features.points.astype("<f2").tobytes() + fp.features.descriptors.tobytes())


def decode(blob: bytes) -> ImageFingerprint:
    """The stored form of `encode` (MLI2); MLI1 rows carry the image kind's version 1 and are
    refused before they get here (they must be indexed again: a page's code was its page's)."""
    magic, code, mirror, n = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not an image fingerprint")
    off = _HEADER.size
    w, h, y0, y1, x0, x1, page = _CONTENT.unpack_from(blob, off)
    off += _CONTENT.size
    points = np.frombuffer(blob, "<f2", 2 * n, off).astype(np.float32).reshape(n, 2)
    off += 4 * n
    descriptors = np.frombuffer(blob, np.uint8, ORB_BYTES * n, off).reshape(n, ORB_BYTES)
    return ImageFingerprint(code, Features(points, descriptors, (w, h)), query_codes=(mirror,),
                            box=(y0, y1, x0, x1), page=bool(page))


def nearest_two(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query descriptor: Hamming distances to its nearest and second-nearest reference
    descriptors, and the nearest one's index (ties go to the lowest index).

    numpy's hardware popcount over 64-bit words: 1.6x faster here than OpenCV's brute-force
    matchers, whose Hamming distance is computed a byte at a time.
    """
    q, r = query.view(np.uint64), ref.view(np.uint64)
    distance = np.zeros((len(q), len(r)), np.uint16)
    for word in range(q.shape[1]):
        distance += np.bitwise_count(q[:, word, None] ^ r[None, :, word])
    rows = np.arange(len(q))
    nearest = distance.argmin(axis=1)
    first = distance[rows, nearest]
    distance[rows, nearest] = np.iinfo(np.uint16).max
    return first, distance.min(axis=1), nearest


@dataclass(frozen=True)
class Evidence:
    """What keypoint verification found: the inliers, and the region each image shares with
    the other under the fitted transform (shares of its width and height): for a crop, all of
    the crop and the window it was cut from."""

    inliers: int = 0
    query_box: NormBox | None = None
    reference_box: NormBox | None = None


def verify(query: Features, ref: Features) -> Evidence:
    """Keypoint matches consistent with one similarity transform (RANSAC).

    Lowe's ratio test keeps distinctive matches; the transform must keep a sane scale, so a
    handful of chance matches between unrelated images cannot line up.
    """
    if len(query) < 4 or len(ref) < 4:
        return Evidence()
    first, second, nearest = nearest_two(query.descriptors, ref.descriptors)
    good = (first < 0.85 * second) & (first < 64)
    fitted = _fit(query.points[good], ref.points[nearest[good]])
    if fitted is None:
        return Evidence()
    transform, mask = fitted
    forward = np.vstack([transform, [0, 0, 1]])
    back = np.linalg.inv(forward)[:2]
    return Evidence(int(mask.sum()),
                    query.share(cv2.transform(ref.corners()[None], back)[0]),
                    ref.share(cv2.transform(query.corners()[None], transform)[0]))


def consistent(src: np.ndarray, dst: np.ndarray, tries: int = 500) -> int:
    """How many point pairs one similarity transform of sane scale maps onto each other, or 0.

    Only the count is wanted, so the transform is not refined: the refinement (iterations of
    Levenberg-Marquardt on the inliers) costs several times what RANSAC does and leaves the
    inliers as they are.
    """
    fitted = _fit(src, dst, refine=False, tries=tries)
    return 0 if fitted is None else int(fitted[1].sum())


def _fit(src: np.ndarray, dst: np.ndarray, refine: bool = True, tries: int = 500
         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The similarity transform RANSAC fits (2x3; `refine`d on its inliers) and its inlier
    mask, or None if there is none of sane scale."""
    if len(src) < 4:
        return None
    transform, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=6.0, maxIters=tries, confidence=0.99,
        refineIters=10 if refine else 0)
    if transform is None or mask is None:
        return None
    (a, b, _), (c, d, _) = transform.tolist()
    if not 0.2 < math.sqrt(abs(a * d - b * c)) < 5.0:  # the scale, its determinant's root
        return None
    return transform, mask.ravel().astype(bool)


def best_evidence(query: ImageFingerprint, ref: ImageFingerprint) -> Evidence:
    """The strongest verification by the views the query has now (`expanded` adds the rest)."""
    return max((verify(view, ref.features) for view in query.views), key=lambda e: e.inliers)


def best_distance(query: ImageFingerprint, ref_code: int) -> int:
    return min((c ^ ref_code).bit_count() for c in query.codes)

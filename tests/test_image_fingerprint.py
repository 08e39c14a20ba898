"""Robustness of the image fingerprint on synthetic photos and the edits sellers make."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from medialayer.calibration import IMAGE
from medialayer.kinds.image import (
    content_box,
    decode,
    dhash,
    encode,
    fingerprint_bytes,
    nearest_two,
    photo_region,
)
from medialayer.kinds.image_search import ImageKind

import synth

KIND = ImageKind()
ORIGINAL = synth.photo(1)
OTHERS = [synth.photo(seed) for seed in range(100, 104)]

EDITS = {
    "jpeg_q20": lambda im: Image.open(__import__("io").BytesIO(synth.jpeg(im, 20))),
    "downscale": lambda im: im.resize((im.width // 3, im.height // 3), Image.LANCZOS),
    "bright": lambda im: Image.eval(im, lambda v: min(255, int(v * 1.3))),
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "blur": synth.blur,
    "watermark": synth.watermark,
    "pad_white": lambda im: synth.pad(im, 0.1, "white"),
    "pad_black": lambda im: synth.pad(im, 0.1, "black"),
    "crop_center_70": lambda im: synth.crop_center(im, 0.7),
    "crop_corner_80": lambda im: synth.crop_corner(im, 0.8),
    "rotate_4": lambda im: synth.rotate(im, 4),
    "hflip": ImageOps.mirror,
    "hflip_crop_80": lambda im: ImageOps.mirror(synth.crop_center(im, 0.8)),
    "screenshot": synth.screenshot,
}


def score(query: Image.Image, reference: Image.Image) -> float:
    q = fingerprint_bytes(synth.png(query), query=True)
    r = fingerprint_bytes(synth.jpeg(reference))
    return KIND.verify(q, r).score


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copy_matches_with_high_confidence(edit: str) -> None:
    s = score(EDITS[edit](ORIGINAL), ORIGINAL)
    assert IMAGE.label(s) == "high", f"{edit}: score {s}"


@pytest.mark.parametrize("edit", ["jpeg_q20", "crop_center_70", "screenshot", "hflip"])
def test_unrelated_images_are_not_high(edit: str) -> None:
    for other in OTHERS:
        s = score(EDITS[edit](other), ORIGINAL)
        assert IMAGE.label(s) != "high", f"{edit}: score {s}"


@settings(max_examples=15, deadline=None)
@given(keep=st.floats(0.7, 1.0), seed=st.integers(0, 3), quality=st.integers(30, 95))
def test_any_centre_crop_to_70_percent_still_matches(keep: float, seed: int, quality: int) -> None:
    im = synth.photo(seed)
    query = Image.open(__import__("io").BytesIO(synth.jpeg(synth.crop_center(im, keep), quality)))
    assert score(query, im) >= 0.6


def test_fingerprint_round_trips_through_bytes() -> None:
    fp = fingerprint_bytes(synth.jpeg(ORIGINAL))
    back = decode(encode(fp))
    assert back.code == fp.code
    assert np.array_equal(back.features.descriptors, fp.features.descriptors)
    assert np.allclose(back.features.points, fp.features.points, atol=0.5)


def test_stored_fingerprint_is_compact() -> None:
    blob = encode(fingerprint_bytes(synth.jpeg(ORIGINAL)))
    assert len(blob) < 10_000


def test_border_trimming_finds_the_content() -> None:
    gray = np.full((200, 300), 255, np.uint8)
    gray[50:150, 100:220] = np.random.default_rng(0).integers(0, 200, (100, 120))
    assert content_box(gray) == (50, 150, 100, 220)


def test_no_trimming_without_a_uniform_border() -> None:
    gray = np.random.default_rng(1).integers(0, 255, (100, 100)).astype(np.uint8)
    assert content_box(gray) == (0, 100, 0, 100)


def test_photo_region_is_found_in_a_listing_page() -> None:
    page = np.asarray(synth.screenshot(ORIGINAL).convert("L"))
    y0, y1, x0, x1 = photo_region(page)
    # the thumbnail is pasted at (40, 110), 640x480
    assert abs(x0 - 40) < 12 and abs(y0 - 110) < 12
    assert abs(x1 - 680) < 12 and abs(y1 - 590) < 12


def test_dhash_is_stable_under_mild_edits_and_differs_across_images() -> None:
    g = np.asarray(ORIGINAL.convert("L"))
    g2 = np.asarray(synth.blur(ORIGINAL).convert("L"))
    g3 = np.asarray(OTHERS[0].convert("L"))
    assert (dhash(g) ^ dhash(g2)).bit_count() <= 4
    assert (dhash(g) ^ dhash(g3)).bit_count() >= 16


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(2, 40), st.integers(0, 2**32 - 1), st.booleans())
def test_nearest_two_agrees_with_bit_by_bit_distances(n: int, m: int, seed: int,
                                                      opposite: bool) -> None:
    """Including descriptors 256 bits apart (the largest distance must not wrap around)."""
    rng = np.random.default_rng(seed)
    query = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    ref = rng.integers(0, 256, (m, 32), dtype=np.uint8)
    if opposite:
        ref[0] = ~query[0]
        ref[1] = query[-1]
    bits = np.unpackbits(query[:, None, :] ^ ref[None, :, :], axis=2).sum(axis=2)
    first, second, nearest = nearest_two(query, ref)
    order = np.sort(bits, axis=1)
    assert (first == order[:, 0]).all() and (second == order[:, 1]).all()
    assert (bits[np.arange(n), nearest] == order[:, 0]).all()


def _crop(im: Image.Image, keep: float) -> Image.Image:
    w, h = round(im.width * keep), round(im.height * keep)
    return im.crop(((im.width - w) // 2, (im.height - h) // 2,
                    (im.width - w) // 2 + w, (im.height - h) // 2 + h))


def test_the_extra_query_views_are_computed_only_when_the_main_view_settles_nothing() -> None:
    stored = {1: fingerprint_bytes(synth.jpeg(ORIGINAL))}
    stored.update((key, fingerprint_bytes(synth.jpeg(other)))
                  for key, other in enumerate(OTHERS, start=2))
    index = KIND.new_index(lambda keys: {k: stored[k] for k in keys if k in stored})
    for key, fp in stored.items():
        index.upsert(key, "shop", fp)
    copy = fingerprint_bytes(synth.jpeg(_crop(ORIGINAL, 0.8), 60), query=True)
    assert index.search(copy, "shop", top_k=5)[0].key == 1
    assert copy.more.cache_info().currsize == 0  # settled by the main view alone
    flipped = fingerprint_bytes(synth.jpeg(ImageOps.mirror(_crop(ORIGINAL, 0.75))), query=True)
    top = index.search(flipped, "shop", top_k=5)[0]
    assert flipped.more.cache_info().currsize == 1  # the mirror view was needed, and found it
    assert top.key == 1 and IMAGE.label(top.score) == "high"


def test_candidates_are_verified_with_keypoints_read_back_from_the_catalog() -> None:
    """The index holds no keypoints: it reads its candidates' back, in one call per set of
    query views, and an item gone from the catalog (deleted by another process, not yet synced
    here) is not verified."""
    stored = {1: fingerprint_bytes(synth.jpeg(ORIGINAL)),
              2: fingerprint_bytes(synth.jpeg(OTHERS[0]))}
    asked: list[list[int]] = []

    def load(keys: list[int]) -> dict[int, object]:
        asked.append(sorted(keys))
        return {k: stored[k] for k in keys if k in stored}

    index = KIND.new_index(load)
    for key, fp in stored.items():
        index.upsert(key, "shop", fp)
    copy = fingerprint_bytes(synth.jpeg(_crop(ORIGINAL, 0.8), 60), query=True)
    top = index.search(copy, "shop", top_k=5)[0]
    assert top.key == 1 and IMAGE.label(top.score) == "high"
    assert len(asked) == 1 and 1 in asked[0]
    del stored[1]
    assert [m.key for m in index.search(copy, "shop", top_k=5) if m.key == 1] == []


def test_threads_fingerprint_with_their_own_orb_detector() -> None:
    """OpenCV algorithm objects are not thread-safe: each thread gets its own, and fingerprints
    computed on many threads at once equal the single-threaded ones."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from medialayer.kinds import image

    files = [synth.jpeg(synth.photo(seed)) for seed in range(6)]
    alone = [encode(fingerprint_bytes(f)) for f in files]
    meet = threading.Barrier(3)

    def detector(_: int) -> int:
        meet.wait(30)  # three threads at once, so none can serve two of the calls
        return id(image._orb())

    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda f: encode(fingerprint_bytes(f)), files * 3))
        detectors = set(pool.map(detector, range(3)))
    assert together == alone * 3
    assert len(detectors) == 3


def test_a_query_looks_for_its_photo_blob_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page test and the last-resort photo view of a query that is not a page are the
    same blob search: the expansion takes the blob the page test found, not a second one."""
    from medialayer.kinds import image

    searched = []
    largest = image._largest_blob

    def counted(gray: np.ndarray, tol: int) -> object:
        searched.append(gray.shape)
        return largest(gray, tol)

    monkeypatch.setattr(image, "_largest_blob", counted)
    padded = synth.pad(ORIGINAL, 0.2, "white")  # a blob on a plain background, not a page
    fp = fingerprint_bytes(synth.jpeg(padded), query=True)
    full = fp.expanded()
    assert not fp.page and len(searched) == 1
    work = image.shrink(image.decode_gray(synth.jpeg(padded), image.WORK_SIDE), image.WORK_SIDE)
    blob = largest(work, image.BLOB_TOLERANCE)
    assert blob is not None  # so the expansion has its last-resort view, from that blob
    assert full.codes[len(fp.codes):] == image.trimmed_codes(
        image._in_gray(image.decode_gray(synth.jpeg(padded), image.WORK_SIDE), work, blob[0]))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_the_dense_view_spreads_its_corners_over_the_grid(count: int, seed: int) -> None:
    """`_spread` keeps the strongest few of every cell, strongest first within a cell and
    cells in order, then the strongest of the rest up to DENSE_FEATURES."""
    from medialayer.kinds import image

    rng = np.random.default_rng(seed)
    shape = (360, 480)
    where = (rng.random((count, 2)) * [shape[1], shape[0]]).astype(np.float32)
    strength = rng.integers(0, 50, count).astype(np.float32)  # ties, as Harris rarely has
    strongest = np.argsort(-strength, kind="stable")
    per_cell = max(1, round(image.DENSE_SPREAD * image.DENSE_FEATURES / image.DENSE_GRID ** 2))
    cells: dict[int, list[int]] = {}
    for i in strongest.tolist():
        x, y = where[i]
        column = min(int(x * image.DENSE_GRID / shape[1]), image.DENSE_GRID - 1)
        row = min(int(y * image.DENSE_GRID / shape[0]), image.DENSE_GRID - 1)
        cells.setdefault(row * image.DENSE_GRID + column, []).append(i)
    even = [i for cell in sorted(cells) for i in cells[cell][:per_cell]]
    rest = [i for i in strongest.tolist() if i not in set(even)]
    expected = even + rest[:max(0, image.DENSE_FEATURES - len(even))]
    assert image._spread(where, strength, strongest, shape).tolist() == expected

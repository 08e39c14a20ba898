"""`high` is safe to act on: shared page templates, featureless codes, symmetric compare, and
explanations of every match."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont, ImageOps

from medialayer import MediaLayer
from medialayer.calibration import IMAGE, IMAGE_CODE_MIN_INFORMATION
from medialayer.kinds.base import Match, both_ways
from medialayer.kinds.image import (
    ORB_FEATURES,
    ImageFingerprint,
    code_information,
    decode,
    encode,
    fingerprint_bytes,
    page_region,
    text_mask,
    verify,
)
from medialayer.kinds.image_search import ImageKind

import synth

KIND = ImageKind()
PRODUCTS = [synth.photo(seed) for seed in range(200, 206)]


def fp(im: Image.Image, quality: int = 85) -> ImageFingerprint:
    return fingerprint_bytes(synth.jpeg(im, quality), query=True)


def compare(a: ImageFingerprint, b: ImageFingerprint) -> Match:
    """What the service's compare does with two uploads."""
    return both_ways(KIND, a, KIND.stored_of(a), b, KIND.stored_of(b))


def test_pages_of_different_products_in_one_template_are_never_high() -> None:
    pages = [fp(synth.listing(p, f"${10 + i}.99")) for i, p in enumerate(PRODUCTS)]
    for a, b in itertools.combinations(pages, 2):
        m = compare(a, b)
        assert IMAGE.label(m.score) != "high", m


def test_a_rescaled_reencoded_copy_of_a_page_is_still_high() -> None:
    page = synth.listing(PRODUCTS[0])
    copy = page.resize((page.width * 3 // 5, page.height * 3 // 5), Image.LANCZOS)
    m = compare(fp(copy, 50), fp(page))
    assert IMAGE.label(m.score) == "high", m
    assert m.explanation is not None and m.explanation["tier"] == "photo_region"


def test_a_page_finds_its_product_photo_first_not_the_other_pages(tmp_path: Path) -> None:
    ml = MediaLayer(str(tmp_path))
    wanted = ml.index(synth.jpeg(PRODUCTS[0]), name="plain")
    for i, product in enumerate(PRODUCTS[1:]):
        ml.index(synth.jpeg(synth.listing(product, f"${i}.50")), name=f"page {i}")
    hits = ml.search(synth.jpeg(synth.listing(PRODUCTS[0], "$7.00"), 70), top_k=5).results
    assert hits[0].media.id == wanted.id and hits[0].confidence == "high"
    assert all(h.confidence != "high" for h in hits[1:])
    assert ml.clusters(min_confidence="high") == []  # the template joins nothing
    ml.close()


def test_a_page_is_told_apart_from_photos_that_only_have_a_plain_background() -> None:
    gray = np.asarray(synth.listing(PRODUCTS[1]).convert("L"))
    assert page_region(gray) is not None
    shot = np.asarray(synth.pad(PRODUCTS[1], 0.2, "white").convert("L"))
    assert page_region(shot) is None  # a product on a white canvas is matched whole
    soft = np.asarray(synth.blur(synth.pad(synth.gradient(3), 0.15, "white"), 6).convert("L"))
    assert page_region(soft) is None  # blobs, but no crisp chrome


def _ramp(start: tuple[int, int, int], end: tuple[int, int, int]) -> Image.Image:
    t = np.linspace(0, 1, 640, dtype=np.float32)[None, :, None]
    row = np.array(start, np.float32) * (1 - t) + np.array(end, np.float32) * t
    return Image.fromarray(np.repeat(row, 480, axis=0).astype(np.uint8))


def test_codes_of_featureless_images_do_not_make_a_match_high() -> None:
    """Two unrelated gradients running opposite ways share a code through the mirror code."""
    fa, fb = fp(_ramp((20, 40, 200), (250, 250, 90))), fp(_ramp((240, 160, 160), (10, 60, 30)))
    assert max(code_information(fa.code), code_information(fb.code)) < IMAGE_CODE_MIN_INFORMATION
    assert min((c ^ fb.code).bit_count() for c in fa.codes) <= 1  # the codes do agree
    assert IMAGE.label(compare(fa, fb).score) != "high"
    assert code_information(fp(PRODUCTS[0]).code) >= IMAGE_CODE_MIN_INFORMATION


def test_keypoints_are_kept_off_large_overlaid_text() -> None:
    marked = np.asarray(synth.tiled_text(synth.gradient(4)).convert("L"))
    mask = text_mask(marked)
    assert mask is not None and 0.05 < np.mean(mask == 0) < 0.9
    assert text_mask(np.asarray(PRODUCTS[2].convert("L"))) is None


def _drawing(seed: int) -> Image.Image:
    """Line art: a few thin outlines and strokes on a plain sheet, no texture anywhere."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (800, 640), (250, 248, 240))
    d = ImageDraw.Draw(im)
    for _ in range(10):
        x0, y0 = int(rng.integers(0, 800)), int(rng.integers(0, 640))
        x1, y1 = x0 + int(rng.integers(-300, 300)), y0 + int(rng.integers(-250, 250))
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        ink = tuple(int(v) for v in rng.integers(0, 100, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            d.line((x0, y0, x1, y1), fill=ink, width=3)
        elif shape == 1:
            d.ellipse(box, outline=ink, width=3)
        else:
            d.rectangle(box, outline=ink, width=3)
    return im


def _tiled_words(im: Image.Image, angle: float, size_div: int, rows: float, columns: int,
                 fill: tuple[int, int, int, int], stroke: int,
                 stroke_fill: tuple[int, int, int, int]) -> Image.Image:
    """A word tiled over the whole image at an angle, each row shifted: a size of the image's
    width / `size_div`, rows `rows` sizes apart, words `columns` sizes apart."""
    side = 2 * max(im.size)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    size = im.width // size_div
    font = ImageFont.load_default(size=size)
    for row, y in enumerate(range(0, side, int(size * rows))):
        for x in range(-(row % 2) * size * 3, side, size * columns):
            d.text((x, y), "SAMPLE", font=font, fill=fill, stroke_width=stroke,
                   stroke_fill=stroke_fill)
    layer = layer.rotate(angle, resample=Image.BICUBIC)
    left, top = (side - im.width) // 2, (side - im.height) // 2
    out = im.convert("RGBA")
    out.alpha_composite(layer.crop((left, top, left + im.width, top + im.height)))
    return out.convert("RGB")


def _heavy_tiles(im: Image.Image) -> Image.Image:
    """Dark outlined words tiled densely over the image: more corners than the drawing has."""
    return _tiled_words(im, 35, 9, 2.2, 6, (20, 20, 20, 170), 2, (255, 255, 255, 170))


def test_heavy_tiled_text_over_a_crop_of_line_art_still_matches() -> None:
    """An off-centre 80 % crop of a drawing under dense outlined words, at JPEG quality 35:
    the letters take the strongest keypoints, so the drawing's corners must still be found."""
    scores = []
    for seed in range(8):
        original = _drawing(seed)
        marked = _heavy_tiles(original.crop((0, 80, 640, 600)))
        query = fingerprint_bytes(synth.jpeg(marked, 35), query=True)
        scores.append(KIND.verify(query, fingerprint_bytes(synth.jpeg(original))).score)
    assert sum(score > 0 for score in scores) >= 4, scores  # the copy is found
    assert sum(score >= IMAGE.medium for score in scores) >= 2, scores  # and some confidently


def _outlined_tiles(im: Image.Image) -> Image.Image:
    """Light words with heavy dark outlines tiled over the image: the outlines' corners are
    the strongest anywhere in it."""
    return _tiled_words(im, 30, 8, 2.5, 5, (255, 255, 255, 120), 3, (0, 0, 0, 230))


def test_the_dense_view_keeps_the_photo_between_the_letters() -> None:
    """Under outlined words tiled over an off-centre crop, the strongest thousand corners are
    nearly all the letters'; the dense view spreads over the image and keeps the photo's."""
    inliers = []
    for seed in range(6):
        original = synth.photo(400 + seed)
        w, h = original.size
        marked = _outlined_tiles(original.crop((w // 5, 0, w, h * 4 // 5)))
        query = fingerprint_bytes(synth.jpeg(marked, 35), query=True).expanded()
        dense = max(query.views, key=len)
        assert len(dense) > ORB_FEATURES
        inliers.append(verify(dense, fingerprint_bytes(synth.jpeg(original)).features).inliers)
    assert sum(n >= 20 for n in inliers) >= 5, inliers


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "pad_white": lambda im: synth.pad(im, 0.15, "white"),
    "crop_80": lambda im: synth.crop_center(im, 0.8),
    "hflip_crop": lambda im: ImageOps.mirror(synth.crop_center(im, 0.85)),
    "rotate": lambda im: synth.rotate(im, 4),
    "listing": synth.listing,
    "watermark": synth.watermark,
    "unrelated": lambda im: synth.photo(999),
}


@settings(max_examples=12, deadline=None)
@given(edit=st.sampled_from(sorted(EDITS)), seed=st.integers(0, 3),
       quality=st.integers(30, 95))
def test_compare_is_symmetric(edit: str, seed: int, quality: int) -> None:
    original = synth.photo(300 + seed)
    a = fingerprint_bytes(synth.jpeg(EDITS[edit](original), quality), query=True)
    b = fingerprint_bytes(synth.jpeg(original), query=True)
    ab, ba = compare(a, b), compare(b, a)
    assert abs(ab.score - ba.score) <= 0.01
    assert IMAGE.label(ab.score) == IMAGE.label(ba.score)
    if ab.explanation is not None and ba.explanation is not None:
        assert ab.explanation["query_box"] == ba.explanation["reference_box"]


def test_a_match_explains_where_it_lies() -> None:
    """A 60 % crop from the top-left corner: it covers all of the query and the top-left
    three fifths of the reference."""
    original = PRODUCTS[3]
    crop = original.crop((0, 0, original.width * 3 // 5, original.height * 3 // 5))
    m = compare(fp(crop), fp(original))
    e = m.explanation
    assert e is not None and e["tier"] == "keypoints" and e["inliers"] >= 20
    qx0, qy0, qx1, qy1 = e["query_box"]
    rx0, ry0, rx1, ry1 = e["reference_box"]
    assert qx0 < 0.15 and qy0 < 0.15 and qx1 > 0.85 and qy1 > 0.85
    assert rx0 < 0.1 and ry0 < 0.1 and 0.5 < rx1 < 0.65 and 0.5 < ry1 < 0.65
    assert e["query_coverage"] > 0.6 and 0.25 < e["reference_coverage"] < 0.4


def test_the_content_box_survives_storage() -> None:
    f = fingerprint_bytes(synth.jpeg(synth.listing(PRODUCTS[4])))
    back = decode(encode(f))
    assert back.page and back.box == f.box and back.features.size == f.features.size


def test_search_results_and_comparisons_carry_the_explanation(tmp_path: Path) -> None:
    ml = MediaLayer(str(tmp_path))
    ml.index(synth.jpeg(PRODUCTS[5]))
    query = synth.jpeg(synth.crop_center(PRODUCTS[5], 0.75), 60)
    hit = ml.search(query).results[0]
    assert hit.as_dict()["explanation"]["tier"] == "keypoints"
    c = ml.compare(query, synth.jpeg(PRODUCTS[5]))
    assert c.as_dict()["explanation"]["inliers"] == hit.explanation["inliers"]
    ml.close()


def test_a_search_finds_the_photo_under_outlined_tiles_among_others(tmp_path: Path) -> None:
    """The dense view's candidates go through the index (voting, then the items whose
    correspondences agree best) to the photo the crop was cut from."""
    ml = MediaLayer(str(tmp_path))
    wanted = [ml.index(synth.jpeg(synth.photo(400 + seed))).id for seed in range(3)]
    for seed in range(8):
        ml.index(synth.jpeg(synth.photo(700 + seed)))
    for seed, key in enumerate(wanted):
        original = synth.photo(400 + seed)
        w, h = original.size
        marked = _outlined_tiles(original.crop((0, h // 5, w * 4 // 5, h)))
        hits = ml.search(synth.jpeg(marked, 35), top_k=3).results
        assert hits and hits[0].media.id == key, hits
        assert hits[0].similarity_score >= IMAGE.medium, hits
    ml.close()

"""Bad input gets the clear error, never a crash: corrupt, empty, huge, hostile, wrong type."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medialayer.errors import MediaTooLarge, UnsupportedMedia
from medialayer.kinds.image import decode_gray, fingerprint_bytes, open_image
from medialayer.sniff import sniff

import synth


def _png_header_only(width: int, height: int, depth: int = 1, colour: int = 0) -> bytes:
    """A PNG that declares huge dimensions: a decompression bomb as far as headers go."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data", [
    b"",
    b"hello world",
    b"<html><body>not an image</body></html>",
    b"\xff\xd8\xff\xe0" + b"\x00" * 10,  # JPEG magic, nothing after
    synth.jpeg(synth.photo(1))[:300],  # truncated JPEG
    synth.png(synth.photo(1))[:100],  # truncated PNG
    b"GIF89a" + b"\x00" * 5,
])
def test_undecodable_bytes_raise_unsupported_media(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        fingerprint_bytes(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(MediaTooLarge):
        open_image(_png_header_only(100_000, 100_000))


def test_pixel_cap_is_configurable() -> None:
    with pytest.raises(MediaTooLarge):
        open_image(synth.png(synth.photo(1)), max_pixels=1000)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode(fmt: str) -> None:
    buf = io.BytesIO()
    synth.photo(2, (320, 240)).save(buf, fmt)
    im = open_image(buf.getvalue())
    assert im.mode == "RGB" and im.size == (320, 240)


def test_heif_decodes_when_available() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(synth.photo(3, (320, 240))).save(buf, quality=80)
    assert sniff(buf.getvalue()[:64]) == "heif"
    assert open_image(buf.getvalue()).size == (320, 240)


def test_transparency_is_flattened_on_white() -> None:
    im = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    assert open_image(synth.png(im)).getpixel((10, 10)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    im = synth.photo(4, (320, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    assert open_image(buf.getvalue(), draft_side=0).size == (200, 320)


def test_large_jpeg_is_decoded_at_reduced_size() -> None:
    big = synth.jpeg(synth.photo(5, (2400, 1800)))
    im = open_image(big, draft_side=480)
    assert 480 <= max(im.size) < 1200


def test_sniff_ignores_names_and_trusts_bytes() -> None:
    assert sniff(synth.jpeg(synth.photo(1))[:64]) == "jpeg"
    assert sniff(synth.png(synth.photo(1))[:64]) == "png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2") == "mp4"
    assert sniff(b"<!doctype html>") is None


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_fast_jpeg_path_agrees_with_pillow(orientation: int) -> None:
    """The OpenCV fast path and Pillow's path see the same, correctly oriented pixels."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    synth.photo(6, (960, 640)).save(buf, "JPEG", exif=exif, quality=92)
    fast = decode_gray(buf.getvalue(), 240)
    slow = np.asarray(open_image(buf.getvalue(), draft_side=240, mode="L"))
    assert fast.shape == slow.shape
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 3


def test_truncated_jpeg_is_refused_on_the_fast_path_too() -> None:
    data = synth.jpeg(synth.photo(1))
    with pytest.raises(UnsupportedMedia):
        decode_gray(data[: len(data) // 2], 64)


def _noise_png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return synth.png(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (500, 1), (1000, 2), (2, 1000), (2, 2),
                                  (3, 5000), (5000, 3), (4000, 7), (30, 30), (31, 31)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_degenerate_shapes_fingerprint_with_the_tiers_that_apply(size: tuple[int, int],
                                                                 fmt: str) -> None:
    """Thin images (or ones that shrink to a line) get a global code and no keypoints: ORB's
    pyramid asserted on them, a 500 over HTTP."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(_noise_png(*size))).save(buf, fmt)
    stored = fingerprint_bytes(buf.getvalue())
    query = fingerprint_bytes(buf.getvalue(), query=True).expanded()
    assert query.code == stored.code
    assert len(stored.features) == 0 or min(size) > 30


def _png_rgba16(width: int, height: int) -> bytes:
    """A real 16-bit RGBA PNG (Pillow decodes it to 8-bit RGBA: 4 bytes a pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = (b"\x00" + bytes(range(256)) * (width * 8 // 256) + b"\x07" * (width * 8 % 256)
            for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    idat = zlib.compress(b"".join(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def test_decoded_bytes_are_capped_before_decoding() -> None:
    """The issue's 8900x8900 16-bit RGBA PNG is under the pixel cap but decodes to 317 MB (and
    peaked at 1.35 GB): refused from its header. The cap counts the bytes per pixel of the
    mode the image decodes to."""
    with pytest.raises(MediaTooLarge, match="bytes"):
        open_image(_png_header_only(8900, 8900, depth=16, colour=6))
    small = _png_rgba16(64, 48)
    with pytest.raises(MediaTooLarge, match="bytes"):
        open_image(small, max_decoded_bytes=64 * 48 * 4 - 1)
    assert open_image(small, max_decoded_bytes=64 * 48 * 4).size == (64, 48)


def test_jpegs_are_capped_at_their_reduced_decode_size() -> None:
    """A JPEG decodes at reduced scale (draft): that size, not the full one, counts."""
    big = synth.jpeg(synth.photo(5, (2400, 1800)))
    assert max(open_image(big, draft_side=300, max_decoded_bytes=600 * 450 * 3).size) < 2400


def test_heavy_decodes_wait_for_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most `heavy_decodes` images over the heavy threshold decode at once per process."""
    from concurrent.futures import ThreadPoolExecutor

    from medialayer.kinds import image

    monkeypatch.setattr(image, "HEAVY_DECODE_BYTES", 1000)
    image.limit_heavy_decodes(1)
    inside, most = [0], [0]
    real = image.ImageOps.exif_transpose

    def counting(im: Image.Image, **kwargs: object) -> object:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            return real(im, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(image.ImageOps, "exif_transpose", counting)
    data = synth.png(synth.photo(3, (400, 300)))
    with ThreadPoolExecutor(4) as pool:
        assert all(im.size == (400, 300) for im in pool.map(open_image, [data] * 8))
    assert most[0] == 1
    image.limit_heavy_decodes(2)


def _jpeg(im: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"subsampling": 0}],
                         ids=["420", "optimized", "444"])
def test_half_a_jpeg_with_an_end_marker_appended_is_refused(keep: float,
                                                            options: dict[str, object]) -> None:
    """OpenCV (and Pillow) decode the missing part as flat blocks and say nothing: refused."""
    data = _jpeg(synth.photo(8, (640, 480)), **options)
    cut = data[: int(len(data) * keep)] + b"\xff\xd9"
    with pytest.raises(UnsupportedMedia, match="truncated"):
        fingerprint_bytes(cut)
    with pytest.raises(UnsupportedMedia, match="truncated"):
        fingerprint_bytes(cut + b"trailing bytes after the end marker")


def test_truncated_jpeg_is_refused_whatever_its_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _jpeg(synth.photo(9, (640, 480)), exif=exif)
    with pytest.raises(UnsupportedMedia, match="truncated"):
        fingerprint_bytes(data[: len(data) // 2] + b"\xff\xd9")


@pytest.mark.parametrize("variant", ["plain", "progressive", "trailing", "white", "gray"])
def test_complete_jpegs_still_decode(variant: str) -> None:
    """Legitimate JPEGs keep working: progressive, bytes after the end marker, flat white
    borders (the corner check's false alarm), grayscale."""
    im = synth.photo(10, (640, 480))
    if variant == "white":
        im = synth.pad(im, 0.2, "white")
    data = _jpeg(im.convert("L") if variant == "gray" else im,
                 progressive=variant == "progressive")
    if variant == "trailing":
        data += b"\x00garbage after EOI" * 20
    assert len(fingerprint_bytes(data).features) > 50

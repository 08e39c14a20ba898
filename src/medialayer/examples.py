"""Example media for a first run: a product photo and a seller's edited copy of it.

`make serve` writes them beside the catalog so the printed curl lines work on a fresh machine
with no photos at hand; the tests build their fixtures from the same generator.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A textured colour image: multi-scale smooth noise plus random shapes (keypoint-rich)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.zeros((h, w, 3), np.float32)
    for cells in (4, 12, 40):
        noise = rng.random((cells * h // w + 1, cells, 3)).astype(np.float32)
        layer = Image.fromarray((noise * 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC)
        base += np.asarray(layer, np.float32) / 3
    return draw_shapes(Image.fromarray(base.clip(0, 255).astype(np.uint8)), rng)


def draw_shapes(im: Image.Image, rng: np.random.Generator, count: int = 30) -> Image.Image:
    """`im` with `count` random filled ellipses, boxes and thick lines drawn on it (in place)."""
    draw = ImageDraw.Draw(im)
    w, h = im.size
    for _ in range(count):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 8)))
    return im


def seller_copy(im: Image.Image) -> Image.Image:
    """What a copycat uploads: cropped to 80 %, with a text watermark (saved at low quality)."""
    w, h = round(im.width * 0.8), round(im.height * 0.8)
    x, y = (im.width - w) // 2, (im.height - h) // 2
    out = im.crop((x, y, x + w, y + h)).convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((out.width // 3, out.height // 2), "BEST PRICE - SHOP NOW",
                               fill=(255, 255, 255, 150))
    out.alpha_composite(layer)
    return out.convert("RGB")


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_examples(folder: Path) -> tuple[Path, Path]:
    """brand-photo.jpg and seller-copy.jpg in `folder` (kept if already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    original, copy = folder / "brand-photo.jpg", folder / "seller-copy.jpg"
    if not (original.exists() and copy.exists()):
        im = photo(2026, (1024, 768))
        original.write_bytes(jpeg_bytes(im))
        copy.write_bytes(jpeg_bytes(seller_copy(im), quality=45))
    return original, copy

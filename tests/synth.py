"""Synthetic photos and the edits sellers make, so tests never depend on the eval corpus."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from medialayer.examples import jpeg_bytes, photo

__all__ = ["photo"]


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    return jpeg_bytes(im, quality)


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def crop_center(im: Image.Image, keep: float) -> Image.Image:
    w, h = round(im.width * keep), round(im.height * keep)
    x, y = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((x, y, x + w, y + h))


def crop_corner(im: Image.Image, keep: float) -> Image.Image:
    return im.crop((0, 0, round(im.width * keep), round(im.height * keep)))


def pad(im: Image.Image, fraction: float, colour: str) -> Image.Image:
    return ImageOps.expand(im, border=round(max(im.size) * fraction), fill=colour)


def rotate(im: Image.Image, degrees: float) -> Image.Image:
    return im.rotate(degrees, resample=Image.BICUBIC, fillcolor="white")


def watermark(im: Image.Image, text: str = "SALE 50% OFF") -> Image.Image:
    out = im.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for i in range(3):
        d.text((out.width // 4, out.height // 4 + 40 * i), text, fill=(255, 255, 255, 140))
    out.alpha_composite(layer)
    return out.convert("RGB")


def blur(im: Image.Image, radius: float = 1.5) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius))


def screenshot(im: Image.Image) -> Image.Image:
    """The photo on the left of a white listing page with a header bar, title, price, button."""
    page = Image.new("RGB", (1280, 860), "white")
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, 1280, 70), fill=(35, 47, 62))
    t = im.copy()
    t.thumbnail((640, 700))
    page.paste(t, (40, 110))
    for i, line in enumerate(["Great product, fast shipping", "$49.99", "Add to cart"]):
        d.text((740, 130 + 70 * i), line, fill="black")
    d.rectangle((740, 330, 1000, 390), fill=(255, 216, 20))
    return page


def listing(im: Image.Image, price: str = "$49.99") -> Image.Image:
    """One seller's template around a product photo: a header with a round logo, a sale banner,
    title, price, a bullet list and two buttons. Every page of it shares all of that."""
    page = Image.new("RGB", (1200, 820), (248, 248, 248))
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, 1200, 80), fill=(30, 40, 90))
    d.ellipse((20, 10, 80, 70), fill=(250, 200, 40), outline="white", width=3)
    d.text((100, 30), "MEGASELLER OUTLET - official store", fill="white")
    d.rounded_rectangle((30, 100, 1170, 170), radius=12, fill=(220, 40, 60))
    d.text((480, 128), "SUMMER SALE -30% ON EVERYTHING", fill="white")
    t = im.copy()
    t.thumbnail((520, 520))
    page.paste(t, (40, 200))
    d.text((620, 210), "Premium quality item, fast delivery", fill="black")
    d.text((620, 250), price, fill=(200, 30, 30))
    for i, line in enumerate(["Free shipping", "30-day returns", "2-year warranty", "In stock"]):
        d.ellipse((620, 304 + 36 * i, 630, 314 + 36 * i), fill=(60, 60, 60))
        d.text((640, 300 + 36 * i), line, fill=(40, 40, 40))
    for i, label in enumerate(["Add to cart", "Buy now"]):
        d.rounded_rectangle((620, 480 + 80 * i, 900, 536 + 80 * i), radius=20,
                            fill=(255, 190, 20) if i == 0 else (30, 140, 60))
        d.text((700, 500 + 80 * i), label, fill="black")
    return page


def gradient(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A smooth two-colour gradient with soft blobs: almost no corners for keypoints."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    out = a * (1 - t[..., None]) + b * t[..., None]
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * w
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        out = out * (1 - blob) + rng.integers(0, 256, 3) * blob
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def tiled_text(im: Image.Image, word: str = "SAMPLE", angle: float = 30) -> Image.Image:
    """A word tiled diagonally over the whole image, half opaque: a heavy watermark."""
    side = 2 * max(im.size)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(12, im.width // 10))
    for row, y in enumerate(range(0, side, im.width // 6)):
        for x in range(-(row % 2) * im.width // 4, side, im.width // 2):
            d.text((x, y), word, font=font, fill=(255, 255, 255, 150))
    layer = layer.rotate(angle, resample=Image.BICUBIC)
    left, top = (side - im.width) // 2, (side - im.height) // 2
    out = im.convert("RGBA")
    out.alpha_composite(layer.crop((left, top, left + im.width, top + im.height)))
    return out.convert("RGB")

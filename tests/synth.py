"""Synthetic photos and the edits sellers make, so tests never depend on the eval corpus."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFilter, ImageOps

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

"""Hard sets the dev corpus lacks: listing pages that share one seller's template, and heavy
text watermarks over off-centre crops of low-texture images.

    python bench/templates.py --out /tmp/hard --products /work/main/eval-data/image-dev/catalog
    python bench/accuracy.py --corpus /tmp/hard --out /tmp/hard-results.csv

It writes a corpus in the dev corpus's layout (catalog/, queries/, negatives/, ground_truth.csv),
so `bench/accuracy.py` and `bench/calibrate.py` score it unchanged. Every layout and watermark is
drawn from a parameter space by `--seed` (page size, colours, where the photo, banner, logo,
buttons and text go; watermark words, fonts, angles, opacity, stroke), so a second seed is a set
the matcher was never looked at with.

Families (queries; the expected answer is in the catalog):
- template_page: product A's photo pasted into template t; the catalog holds A's plain photo and
  pages of other products in the same template. Negatives: pages of products not in the catalog.
- template_page_copy: a catalog page rescaled and re-encoded.
- wm_tiled_crop / wm_stroke_crop / wm_logo_crop: a low-texture image (gradient, line art,
  blurred shot) cropped off-centre (70-85 % of each side), stamped with a tiled diagonal word or
  line (plain or outlined), one or two large outlined lines of text, or large semi-opaque
  badges with the shop's name, in any of the machine's fonts, saved at JPEG quality 30-40.
  Negatives: the same edits of low-texture images not in the catalog.
- wm_photo_crop: the same crops and watermarks (each style in turn) over ordinary photos.

With --photo-set N, a set of ordinary photos instead (the hidden corpus's "crop + large
watermark + q35" family is of this kind):

    python bench/templates.py --out /tmp/photos --seed 5 --photo-set 80 \
        --products /work/main/eval-data/image-dev/catalog \
        --others /work/main/eval-data/image-dev/negatives

- wm_tiled / wm_stroke / wm_logo: the styles above; wm_text: one big filled word or line,
  sometimes shadowed, turned up to 30 degrees; wm_line: the dev corpus's one-line watermark
  made large (held out: never looked at while tuning). Each over a centre or off-centre crop,
  JPEG q30-40. Negatives: one photo per source of --others under a style in turn.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from medialayer.examples import photo

FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
WORDS = ("SAMPLE", "PREVIEW", "COPYRIGHT", "DEMO", "PROOF", "DO NOT COPY")
LINES = ("www.cheap-store.example", "\u00a9 2024 MegaSeller", "best-deals.example.com",
         "\u00a9 ShopKing Outlet", "QUALITY GOODS 4U", "@bargain_hunter_shop")
TITLES = ("Premium quality item", "Bestseller 2024 edition", "Limited offer - new stock",
          "Original product, fast delivery", "Top rated by buyers")
BULLETS = ("Free shipping", "30-day returns", "2-year warranty", "In stock", "Ships in 24 h",
           "Secure payment", "Gift wrapping")


def fonts() -> list[Path]:
    """TrueType fonts on this machine (none is fine: Pillow's built-in font scales too)."""
    found = sorted({p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.ttf")})
    return [p for p in found if "Mono" not in p.name] or found


def font(rng: random.Random, size: int, pool: list[Path]) -> ImageFont.FreeTypeFont:
    if pool:
        return ImageFont.truetype(str(rng.choice(pool)), size)
    return ImageFont.load_default(size)


def colour(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


@dataclass(frozen=True)
class Template:
    """One seller's page layout: everything but the photo (and the price) is shared."""

    size: tuple[int, int]
    background: tuple[int, int, int]
    header: tuple[int, tuple[int, int, int]]
    banner: tuple[int, int, int, int]
    banner_colour: tuple[int, int, int]
    photo_box: tuple[int, int, int, int]
    text_origin: tuple[int, int]
    logo: tuple[int, int, int]
    seed: int


def make_template(rng: random.Random) -> Template:
    mobile = rng.random() < 0.3
    w, h = (rng.choice((720, 750, 828)), rng.choice((1280, 1334, 1400))) if mobile else (
        rng.choice((1200, 1280, 1366, 1440)), rng.choice((800, 860, 900)))
    header = rng.randint(50, 100)
    banner_h = rng.randint(50, 90)
    banner_y = header + rng.randint(8, 30)
    top = banner_y + banner_h + rng.randint(15, 40)
    if mobile:
        side = int(w * rng.uniform(0.8, 0.92))
        x0 = (w - side) // 2
        photo_box = (x0, top, x0 + side, top + side)
        text_origin = (x0, top + side + 30)
    else:
        side = min(int(w * rng.uniform(0.38, 0.5)), h - top - 40)
        left = rng.random() < 0.6
        x0 = rng.randint(30, 80) if left else w - side - rng.randint(30, 80)
        photo_box = (x0, top, x0 + side, top + side)
        text_origin = (x0 + side + 50, top) if left else (rng.randint(40, 80), top)
    logo_r = rng.randint(header // 3, header // 2 - 4)
    logo_x = logo_r + 20 if rng.random() < 0.5 else w - logo_r - 20
    grey = rng.randint(236, 255)
    return Template(size=(w, h), background=(grey, grey, min(255, grey + rng.randint(0, 6))),
                    header=(header, colour(rng, 10, 90)),
                    banner=(rng.randint(0, 40), banner_y, w - rng.randint(0, 40),
                            banner_y + banner_h),
                    banner_colour=colour(rng, 120, 255), photo_box=photo_box,
                    text_origin=text_origin, logo=(logo_x, header // 2, logo_r),
                    seed=rng.randint(0, 1 << 30))


def page(template: Template, product: Image.Image, price_seed: int,
         pool: list[Path]) -> Image.Image:
    """`product` fitted into the template's photo box; the chrome is drawn from the template's
    own seed, so every page of one template shares it exactly (the price aside)."""
    rng = random.Random(template.seed)
    w, h = template.size
    canvas = Image.new("RGB", template.size, template.background)
    d = ImageDraw.Draw(canvas)
    header_h, header_colour = template.header
    d.rectangle((0, 0, w, header_h), fill=header_colour)
    shop = font(rng, header_h // 2, pool)
    d.text((template.logo[0] + template.logo[2] + 20 if template.logo[0] < w // 2 else 30,
            header_h // 4), rng.choice(("MegaSeller", "ShopKing", "Bargain Hub", "TopDeals")),
           fill="white", font=shop)
    lx, ly, lr = template.logo
    d.ellipse((lx - lr, ly - lr, lx + lr, ly + lr), fill=colour(rng, 150, 255),
              outline="white", width=3)
    d.text((lx, ly), rng.choice("MSBT"), fill=header_colour, font=font(rng, lr, pool),
           anchor="mm")
    bx0, by0, bx1, by1 = template.banner
    d.rounded_rectangle(template.banner, radius=rng.randint(0, 20), fill=template.banner_colour)
    d.text(((bx0 + bx1) // 2, (by0 + by1) // 2),
           rng.choice(("SUMMER SALE -30%", "BLACK FRIDAY DEALS", "FREE SHIPPING TODAY",
                       "MEGA SALE UP TO 70% OFF")),
           fill=colour(rng, 0, 60), font=font(rng, (by1 - by0) // 2, pool), anchor="mm")
    px0, py0, px1, py1 = template.photo_box
    thumb = product.convert("RGB")
    thumb.thumbnail((px1 - px0, py1 - py0))
    canvas.paste(thumb, (px0 + (px1 - px0 - thumb.width) // 2,
                         py0 + (py1 - py0 - thumb.height) // 2))
    tx, ty = template.text_origin
    title = font(rng, rng.randint(26, 36), pool)
    d.text((tx, ty), rng.choice(TITLES), fill=(20, 20, 20), font=title)
    price = random.Random(price_seed)
    d.text((tx, ty + 60), f"${price.randint(5, 300)}.{price.randint(0, 99):02d}",
           fill=colour(rng, 150, 230), font=font(rng, 40, pool))
    for i, bullet in enumerate(rng.sample(BULLETS, rng.randint(3, 6))):
        y = ty + 130 + 36 * i
        d.ellipse((tx, y + 8, tx + 10, y + 18), fill=(60, 60, 60))
        d.text((tx + 22, y), bullet, fill=(50, 50, 50), font=font(rng, 22, pool))
    by = ty + 150 + 36 * 6
    for label in rng.sample(("Add to cart", "Buy now", "Wishlist"), 2):
        d.rounded_rectangle((tx, by, tx + 240, by + 56), radius=rng.randint(4, 28),
                            fill=colour(rng, 30, 255))
        d.text((tx + 120, by + 28), label, fill="black", font=font(rng, 24, pool), anchor="mm")
        by += 76
    return canvas


def low_texture(rng: random.Random, kind: str, blurred: Image.Image | None) -> Image.Image:
    """A smooth gradient with soft blobs, sparse line art, or a heavily blurred photo."""
    w, h = rng.choice(((900, 900), (1000, 750), (800, 1000)))
    if kind == "blurred" and blurred is not None:
        im = blurred.convert("RGB").resize((w, h))
        return im.filter(ImageFilter.GaussianBlur(rng.uniform(5, 9)))
    if kind == "lineart":
        im = Image.new("RGB", (w, h), colour(rng, 225, 255))
        d = ImageDraw.Draw(im)
        for _ in range(rng.randint(6, 12)):
            x0, y0 = rng.randint(0, w), rng.randint(0, h)
            x1, y1 = x0 + rng.randint(-w // 2, w // 2), y0 + rng.randint(-h // 2, h // 2)
            ink, width = colour(rng, 0, 120), rng.randint(2, 5)
            shape = rng.randint(0, 2)
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            if shape == 0:
                d.line((x0, y0, x1, y1), fill=ink, width=width)
            elif shape == 1:
                d.ellipse(box, outline=ink, width=width)
            else:
                d.rectangle(box, outline=ink, width=width)
        return im
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(angle) + yy * np.sin(angle)) - (xx * np.cos(angle)
                                                      + yy * np.sin(angle)).min())
    t /= t.max()
    a, b = np.array(colour(rng), np.float32), np.array(colour(rng), np.float32)
    im = a * (1 - t[..., None]) + b * t[..., None]
    for _ in range(rng.randint(2, 4)):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * w
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        im = im * (1 - blob) + np.array(colour(rng), np.float32) * blob
    return Image.fromarray(im.clip(0, 255).astype(np.uint8))


def off_centre_crop(im: Image.Image, rng: random.Random) -> Image.Image:
    """A window of 70-85 % of each side, anywhere but the centre: at a border, or drawn."""
    fx, fy = rng.uniform(0.70, 0.85), rng.uniform(0.70, 0.85)
    w, h = round(im.width * fx), round(im.height * fy)
    ax, ay = rng.choice((0.0, 1.0, rng.random())), rng.choice((0.0, 1.0, rng.random()))
    x, y = round((im.width - w) * ax), round((im.height - h) * ay)
    return im.crop((x, y, x + w, y + h))


def ink_pair(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A fill and a contrasting outline colour."""
    ink = rng.choice(((255, 255, 255), (0, 0, 0), (128, 128, 128), (220, 30, 30),
                      (30, 60, 200)))
    return ink, (255, 255, 255) if sum(ink) < 300 else (0, 0, 0)


def tiled_watermark(im: Image.Image, rng: random.Random, pool: list[Path]) -> Image.Image:
    """A word (or a shop's line) repeated over the whole image on a diagonal grid, plain or
    outlined."""
    word = rng.choice(WORDS) if rng.random() < 0.7 else rng.choice(LINES)
    size = max(12, int(im.width * rng.uniform(0.07, 0.13) * min(1.0, 8 / len(word))))
    f = font(rng, size, pool)
    ink, outline = ink_pair(rng)
    alpha = int(255 * rng.uniform(0.35, 0.7))
    stroke = max(1, size // 14) if rng.random() < 0.4 else 0
    side = 2 * max(im.size)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    step_x, step_y = int(size * len(word) * rng.uniform(0.75, 1.1)), int(size * rng.uniform(2, 3))
    for row, y in enumerate(range(0, side, step_y)):
        for x in range(-(row % 2) * step_x // 2, side, step_x):
            d.text((x, y), word, font=f, fill=(*ink, alpha), stroke_width=stroke,
                   stroke_fill=(*outline, alpha))
    layer = layer.rotate(rng.uniform(20, 45) * rng.choice((-1, 1)), resample=Image.BICUBIC)
    left, top = (side - im.width) // 2, (side - im.height) // 2
    layer = layer.crop((left, top, left + im.width, top + im.height))
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def stroke_watermark(im: Image.Image, rng: random.Random, pool: list[Path]) -> Image.Image:
    """One or two large lines of outlined text through the middle, as wide as most of the
    image."""
    lines = rng.sample(LINES, rng.choice((1, 1, 2)))
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    centre = rng.uniform(0.4, 0.6)
    for i, text in enumerate(lines):
        f = font(rng, 20, pool)
        width = f.getlength(text) if hasattr(f, "getlength") else 20 * len(text)
        size = max(12, int(20 * im.width * rng.uniform(0.8, 1.0) / max(1.0, width)))
        f = font(rng, size, pool)
        stroke = max(2, size // rng.randint(12, 20))
        ink, outline = ink_pair(rng)
        fill_alpha = rng.choice((0, int(255 * rng.uniform(0.3, 0.6))))
        y = im.height * (centre + (i - (len(lines) - 1) / 2) * 0.22)
        d.text((im.width // 2, int(y)), text, font=f, anchor="mm", fill=(*ink, fill_alpha),
               stroke_width=stroke, stroke_fill=(*outline, int(255 * rng.uniform(0.6, 0.9))))
    layer = layer.rotate(rng.uniform(-15, 15), resample=Image.BICUBIC)
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def logo_watermark(im: Image.Image, rng: random.Random, pool: list[Path]) -> Image.Image:
    """A large semi-opaque badge (disc, ring or rounded box with the shop's name in it) over
    a third to a half of the image, sometimes with a second, smaller one."""
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for scale in (rng.uniform(0.35, 0.55),) + ((rng.uniform(0.15, 0.25),)
                                                if rng.random() < 0.5 else ()):
        r = int(min(im.size) * scale / 2)
        cx = int(im.width * rng.uniform(0.3, 0.7))
        cy = int(im.height * rng.uniform(0.3, 0.7))
        ink, outline = ink_pair(rng)
        alpha = int(255 * rng.uniform(0.3, 0.6))
        box = (cx - r, cy - r, cx + r, cy + r) if rng.random() < 0.6 else (
            cx - int(1.6 * r), cy - r // 2, cx + int(1.6 * r), cy + r // 2)
        shape = rng.randint(0, 2)
        width = max(3, r // 10)
        if shape == 0:
            d.ellipse(box, fill=(*ink, alpha), outline=(*outline, alpha), width=width)
        elif shape == 1:
            d.ellipse(box, outline=(*ink, min(255, 2 * alpha)), width=width)
        else:
            d.rounded_rectangle(box, radius=r // 3, fill=(*ink, alpha),
                                outline=(*outline, alpha), width=width)
        text = rng.choice(("MegaSeller", "ShopKing", "TopDeals", "\u00a9 Bargain", "OUTLET"))
        f = font(rng, max(10, int(1.4 * r / len(text) * 1.6)), pool)
        d.text((cx, cy), text, font=f, anchor="mm", fill=(*outline, min(255, 2 * alpha)),
               stroke_width=max(1, r // 40), stroke_fill=(*ink, min(255, 2 * alpha)))
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def text_watermark(im: Image.Image, rng: random.Random, pool: list[Path]) -> Image.Image:
    """One big filled word or line (no outline), 40-75 % opaque, at the centre, top or
    bottom, turned up to 30 degrees, sometimes over a soft drop shadow."""
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    text = rng.choice(WORDS + LINES)
    f = font(rng, max(12, int(im.width * rng.uniform(0.12, 0.22) * min(1.0, 7 / len(text)))),
             pool)
    ink = rng.choice(((255, 255, 255), (0, 0, 0), (200, 0, 0), (255, 220, 0)))
    alpha = int(255 * rng.uniform(0.4, 0.75))
    y = int(im.height * rng.choice((0.5, 0.8, 0.25)))
    if rng.random() < 0.5:
        d.text((im.width // 2 + 4, y + 4), text, font=f, anchor="mm", fill=(0, 0, 0, alpha // 2))
    d.text((im.width // 2, y), text, font=f, anchor="mm", fill=(*ink, alpha))
    layer = layer.rotate(rng.uniform(-30, 30), resample=Image.BICUBIC)
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


LINE_TEXTS = ("\u00a9 BestDeals", "SAMPLE", "ShopMaster", "www.cheap-store.example",
              "\u00a9 2024 MegaSeller", "TopSeller", "Original Photo", "Do not copy", "OUTLET",
              "seller_4821")


def line_watermark(im: Image.Image, rng: random.Random, pool: list[Path]) -> Image.Image:
    """The dev corpus's one-line watermark made large (held out: never looked at while
    tuning): font 12-22 % of the width or 60-95 % of it across, 35-65 % opaque, fill only
    or thinly outlined; at the centre, at the bottom, twice, or turned 25-40 degrees."""
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    text = rng.choice(LINE_TEXTS)
    probe = font(rng, 20, pool)
    across = probe.getlength(text) if hasattr(probe, "getlength") else 20 * len(text)
    size = int(20 * im.width * rng.uniform(0.6, 0.95) / max(1.0, across))
    f = font(rng, max(14, min(size, int(im.width * rng.uniform(0.12, 0.22)))), pool)
    ink = rng.choice(((255, 255, 255), (0, 0, 0), (200, 0, 0), (255, 200, 0)))
    alpha = rng.randint(90, 165)
    stroke = rng.choice((0, 0, max(1, f.size // 20)))
    outline = (255, 255, 255, alpha) if ink == (0, 0, 0) else (0, 0, 0, alpha)
    where = rng.choice(("centre", "bottom", "turned", "twice"))
    for y in {"bottom": (0.85,), "twice": (0.3, 0.7)}.get(where, (0.5,)):
        d.text((im.width // 2, int(im.height * y)), text, font=f, anchor="mm",
               fill=(*ink, alpha), stroke_width=stroke, stroke_fill=outline)
    if where == "turned":
        layer = layer.rotate(rng.uniform(25, 40) * rng.choice((-1, 1)), resample=Image.BICUBIC)
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def any_crop(im: Image.Image, rng: random.Random) -> Image.Image:
    """A centre crop keeping 75-88 % of each side, or an off-centre one."""
    if rng.random() < 0.5:
        return off_centre_crop(im, rng)
    keep = rng.uniform(0.75, 0.88)
    w, h = round(im.width * keep), round(im.height * keep)
    x, y = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((x, y, x + w, y + h))


def jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def load_products(folder: Path | None, count: int, seed: int) -> list[Image.Image]:
    """Photos from `folder` (shuffled by seed), topped up with synthetic textured photos."""
    paths: list[Path] = []
    if folder is not None:
        paths = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        random.Random(seed).shuffle(paths)
    out = [Image.open(p).convert("RGB") for p in paths[:count]]
    out += [photo(10_000 * seed + i, (800, 640)) for i in range(count - len(out))]
    return out


Row = tuple[str, str, str, str, str]


class Writer:
    """Writes files and ground-truth rows of one corpus."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[Row] = []
        for sub in ("catalog", "queries", "negatives"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def catalog(self, name: str, im: Image.Image) -> str:
        path = f"catalog/{name}.jpg"
        (self.out / path).write_bytes(jpeg(im, 90))
        return path

    def query(self, kind: str, name: str, data: bytes, family: str, params: str,
              expected: str = "") -> None:
        folder = "queries" if kind == "query" else "negatives"
        path = f"{folder}/{name}.jpg"
        (self.out / path).write_bytes(data)
        self.rows.append((path, kind, family, params, expected))

    def finish(self) -> None:
        with open(self.out / "ground_truth.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "kind", "transform", "params", "expected"])
            w.writerows(self.rows)


def build_templates(w: Writer, products: list[Image.Image], templates: int, per_set: int,
                    negatives: int, rng: random.Random, pool: list[Path]) -> None:
    """Per template: per_set plain photos (A) and per_set pages of other products (B) in the
    catalog; pages of A and rescaled copies of B's pages as queries; pages of yet other
    products (C) as negatives."""
    it = iter(products)
    for t in range(templates):
        tpl = make_template(rng)
        plain = [next(it) for _ in range(per_set)]
        paged = [next(it) for _ in range(per_set)]
        unseen = [next(it) for _ in range(negatives)]
        for i, im in enumerate(plain):
            expected = w.catalog(f"t{t}_plain{i:03d}", im)
            w.query("query", f"t{t}_page{i:03d}", jpeg(page(tpl, im, rng.randint(0, 1 << 30),
                                                            pool), rng.randint(60, 90)),
                    "template_page", f"template {t}", expected)
        for i, im in enumerate(paged):
            original = page(tpl, im, rng.randint(0, 1 << 30), pool)
            expected = w.catalog(f"t{t}_listing{i:03d}", original)
            scale = rng.uniform(0.55, 0.9)
            copy = original.resize((round(original.width * scale),
                                    round(original.height * scale)), Image.LANCZOS)
            quality = rng.randint(40, 75)
            w.query("query", f"t{t}_copy{i:03d}", jpeg(copy, quality), "template_page_copy",
                    f"template {t}, x{scale:.2f}, q{quality}", expected)
        for i, im in enumerate(unseen):
            w.query("negative", f"t{t}_unseen{i:03d}",
                    jpeg(page(tpl, im, rng.randint(0, 1 << 30), pool), rng.randint(60, 90)),
                    "template_page", f"template {t}")


Mark = Callable[[Image.Image, random.Random, list[Path]], Image.Image]


def build_photo_watermarks(w: Writer, photos: list[Image.Image], negatives: int,
                           rng: random.Random, pool: list[Path]) -> None:
    """Ordinary photos in the catalog; off-centre crops under either watermark as queries."""
    marks: tuple[Mark, ...] = (tiled_watermark, stroke_watermark, logo_watermark)
    for i, original in enumerate(photos):
        role = "query" if i < len(photos) - negatives else "negative"
        expected = w.catalog(f"photo{i:03d}", original) if role == "query" else ""
        quality = rng.randint(30, 40)
        mark = marks[i % len(marks)]
        data = jpeg(mark(off_centre_crop(original, rng), rng, pool), quality)
        w.query(role, f"wm_photo_crop_{i:03d}", data, "wm_photo_crop",
                f"{mark.__name__}, q{quality}", expected)


def build_watermarks(w: Writer, blur_sources: list[Image.Image], per_set: int, negatives: int,
                     rng: random.Random, pool: list[Path]) -> None:
    """Low-texture originals in the catalog; watermarked off-centre crops as queries."""
    marks: dict[str, Mark] = {"wm_tiled_crop": tiled_watermark, "wm_stroke_crop": stroke_watermark,
                              "wm_logo_crop": logo_watermark}
    kinds = ("gradient", "lineart", "blurred")
    sources = iter(blur_sources)
    for i in range(per_set + negatives):
        kind = kinds[i % len(kinds)]
        original = low_texture(rng, kind, next(sources, None))
        role = "query" if i < per_set else "negative"
        expected = w.catalog(f"low{i:03d}_{kind}", original) if role == "query" else ""
        for family, mark in marks.items():
            quality = rng.randint(30, 40)
            data = jpeg(mark(off_centre_crop(original, rng), rng, pool), quality)
            w.query(role, f"{family}_{i:03d}", data, family, f"{kind}, q{quality}", expected)


PHOTO_MARKS: dict[str, Mark] = {"wm_tiled": tiled_watermark, "wm_stroke": stroke_watermark,
                                 "wm_logo": logo_watermark, "wm_text": text_watermark,
                                 "wm_line": line_watermark}


def build_photo_set(w: Writer, folder: Path, others: Path, count: int, rng: random.Random,
                    pool: list[Path]) -> None:
    """Every photo of `folder` in the catalog (those not edited are distractors); `count` of
    them under each watermark style over a crop (`any_crop`, JPEG q30-40) as queries; one
    photo per name prefix of `others` (not in the catalog) under a style in turn as
    negatives."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for path in paths:
        w.catalog(path.stem, Image.open(path).convert("RGB"))
    for path in rng.sample(paths, min(count, len(paths))):
        original = Image.open(path).convert("RGB")
        for family, mark in PHOTO_MARKS.items():
            quality = rng.randint(30, 40)
            data = jpeg(mark(any_crop(original, rng), rng, pool), quality)
            w.query("query", f"{family}_{path.stem}", data, family, f"q{quality}",
                    f"catalog/{path.stem}.jpg")
    firsts: dict[str, Path] = {}
    for path in sorted(others.iterdir()):
        firsts.setdefault(path.name.split("_")[0], path)
    marks = list(PHOTO_MARKS.items())
    for i, path in enumerate(firsts.values()):
        family, mark = marks[i % len(marks)]
        quality = rng.randint(30, 40)
        data = jpeg(mark(any_crop(Image.open(path).convert("RGB"), rng), rng, pool), quality)
        w.query("negative", f"{family}_other{i:03d}", data, family, f"q{quality}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--products", type=Path, help="folder of product photos (else synthetic)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--templates", type=int, default=2)
    ap.add_argument("--per-set", type=int, default=30)
    ap.add_argument("--negatives", type=int, default=15)
    ap.add_argument("--photo-set", type=int, metavar="N",
                    help="instead: a set of ordinary photos, N of --products under every "
                         "watermark style, --others as negatives")
    ap.add_argument("--others", type=Path, help="photos not in the catalog (--photo-set)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = fonts()
    if args.photo_set:
        if args.products is None or args.others is None:
            ap.error("--photo-set needs --products and --others")
        w = Writer(args.out)
        build_photo_set(w, args.products, args.others, args.photo_set, rng, pool)
        w.finish()
        print(f"wrote {len(w.rows)} queries and negatives to {args.out}", file=sys.stderr)
        return
    per_template = 2 * args.per_set + args.negatives
    blurred = args.per_set + args.negatives + 1  # a third of the 3x low-texture originals
    photos = args.per_set + args.negatives
    products = load_products(args.products, args.templates * per_template + blurred + photos,
                             args.seed)
    w = Writer(args.out)
    build_templates(w, products, args.templates, args.per_set, args.negatives, rng, pool)
    used = args.templates * per_template
    build_watermarks(w, products[used:used + blurred], 3 * args.per_set, 3 * args.negatives,
                     rng, pool)
    build_photo_watermarks(w, products[used + blurred:], args.negatives, rng, pool)
    w.finish()
    print(f"wrote {len(w.rows)} queries and negatives to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

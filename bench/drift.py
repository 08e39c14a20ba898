"""Robustness off the dev parameters: edits the dev corpus does not use, on its catalog images.

    python bench/drift.py --corpus eval-data/image-dev [--sample 60]

The hidden evaluation split uses other parameters for every family; this is a cheap check that
the method is not tuned to the dev ones. Each variant is applied to a sample of catalog images and
searched against the whole catalog; it prints top-1 hits and how many of them are labelled high.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from medialayer import MediaLayer

Edit = Callable[[Image.Image], Image.Image]


def crop(fx: float, fy: float, ax: float, ay: float) -> Edit:
    """Keep fx x fy of the image, the window anchored at (ax, ay) in [0, 1]."""
    def edit(im: Image.Image) -> Image.Image:
        w, h = round(im.width * fx), round(im.height * fy)
        x, y = round((im.width - w) * ax), round((im.height - h) * ay)
        return im.crop((x, y, x + w, y + h))
    return edit


def page(size: tuple[int, int], box: tuple[int, int, int, int], bg: tuple[int, int, int]) -> Edit:
    """The photo fitted into `box` of a page with a header bar and lines of text."""
    def edit(im: Image.Image) -> Image.Image:
        canvas = Image.new("RGB", size, bg)
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, size[0], 90), fill=(20, 120, 200))
        thumb = im.copy()
        thumb.thumbnail((box[2] - box[0], box[3] - box[1]))
        canvas.paste(thumb, box[:2])
        for i in range(8):
            draw.text((40, size[1] - 300 + 30 * i), f"Product detail line {i}", fill="black")
        return canvas
    return edit


def small_low_quality(im: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    im.resize((im.width // 4, im.height // 4), Image.LANCZOS).save(buf, "JPEG", quality=15)
    return Image.open(io.BytesIO(buf.getvalue()))


VARIANTS: dict[str, Edit] = {
    "centre crop 65 %": crop(0.65, 0.65, 0.5, 0.5),
    "corner crop 75 %": crop(0.75, 0.75, 1.0, 0.0),
    "wide crop 90 x 60 %": crop(0.9, 0.6, 0.5, 0.3),
    "rotate 7 deg": lambda im: im.rotate(7, resample=Image.BICUBIC, fillcolor="white"),
    "grey padding 20 %": lambda im: ImageOps.expand(im, round(max(im.size) * 0.2), (200,) * 3),
    "screenshot, photo on the right": page((1280, 900), (680, 150, 1240, 750), (245, 245, 245)),
    "mobile screenshot": page((750, 1334), (25, 160, 725, 860), (255, 255, 255)),
    "mirror + crop 85 %": lambda im: ImageOps.mirror(crop(0.85, 0.85, 0.5, 0.5)(im)),
    "blur radius 3": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "x0.25 + JPEG q15": small_low_quality,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=60)
    args = ap.parse_args()
    catalog = sorted((args.corpus / "catalog").iterdir())
    sample = random.Random(7).sample(catalog, min(args.sample, len(catalog)))
    with tempfile.TemporaryDirectory() as data_dir:
        ml = MediaLayer(data_dir)
        names = {ml.index(p).id: p.name for p in catalog}
        print(f"| variant | top-1 right | labelled high | of {len(sample)} |")
        print("|---|---|---|---|")
        for label, edit in VARIANTS.items():
            right = high = 0
            for path in sample:
                buf = io.BytesIO()
                edit(Image.open(path).convert("RGB")).save(buf, "PNG")
                hits = ml.search(buf.getvalue(), top_k=1).results
                if hits and names[hits[0].media.id] == path.name:
                    right += 1
                    high += hits[0].confidence == "high"
            print(f"| {label} | {right} | {high} | |")
        ml.close()


if __name__ == "__main__":
    main()

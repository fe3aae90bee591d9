"""Contact sheets: a grid of thumbnails, one row per object, with an optional row label.

Used by ``xpt render --preview`` and ``xpt inspect --preview`` so a user sees at once
what was produced.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

_PAD = 4
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_LABEL_CHARS = 28


def _fit(image: Image.Image, cell: int) -> Image.Image:
    """``image`` scaled to fit a ``cell`` x ``cell`` square, on white, centred (RGB)."""
    image = image.convert("RGBA")
    scale = cell / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    tile = Image.new("RGBA", (cell, cell), (*_BACKGROUND, 255))
    tile.alpha_composite(image, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return tile.convert("RGB")


def contact_sheet(
    rows: list[list[Image.Image]], labels: list[str] | None = None, cell: int = 96
) -> Image.Image:
    """A grid image: row ``i`` shows ``rows[i]`` left to right, ``labels[i]`` on its left.

    Every image is scaled to fit a ``cell``-pixel square (aspect kept; transparent pixels
    shown on white). Rows may have different lengths. Returns an RGB image.
    """
    if cell < 8:
        raise ValueError(f"cell must be at least 8 pixels, got {cell}")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"got {len(labels)} labels for {len(rows)} rows")
    font = ImageFont.load_default()
    texts = [str(label)[:_LABEL_CHARS] for label in labels] if labels is not None else []
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max((measure.textlength(t, font=font) for t in texts), default=0.0)
    left = int(label_width) + 2 * _PAD if texts else 0
    columns = max((len(row) for row in rows), default=0)
    width = max(left + columns * (cell + _PAD) + _PAD, 1)
    height = max(len(rows) * (cell + _PAD) + _PAD, 1)
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = _PAD + r * (cell + _PAD)
        if texts:
            _, y0, _, y1 = draw.textbbox((0, 0), texts[r], font=font)
            draw.text((_PAD, top + (cell - (y1 - y0)) // 2 - y0), texts[r], fill=_TEXT, font=font)
        for c, image in enumerate(row):
            sheet.paste(_fit(image, cell), (left + _PAD + c * (cell + _PAD), top))
    return sheet

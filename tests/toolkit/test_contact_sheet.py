"""The contact sheet helper shared by render --preview and inspect --preview."""

from __future__ import annotations

import pytest
from PIL import Image

from xpt.toolkit.contact_sheet import contact_sheet


def _solid(
    colour: tuple[int, ...], size: tuple[int, int] = (40, 40), mode: str = "RGB"
) -> Image.Image:
    return Image.new(mode, size, colour)


def test_grid_places_each_image_in_its_cell() -> None:
    rows = [
        [_solid((255, 0, 0)), _solid((0, 255, 0)), _solid((0, 0, 255))],
        [_solid((10, 10, 10), size=(80, 20))],
    ]
    sheet = contact_sheet(rows, cell=32)
    assert sheet.mode == "RGB" and sheet.size == (4 + 3 * 36, 4 + 2 * 36)
    # Cell (row, column) starts at (4 + 36 * column, 4 + 36 * row); sample its centre.
    assert sheet.getpixel((4 + 16, 4 + 16)) == (255, 0, 0)
    assert sheet.getpixel((4 + 36 + 16, 4 + 16)) == (0, 255, 0)
    assert sheet.getpixel((4 + 72 + 16, 4 + 16)) == (0, 0, 255)
    # A wide image keeps its aspect: 32 x 8, centred vertically, white above and below.
    assert sheet.getpixel((4 + 16, 40 + 16)) == (10, 10, 10)
    assert sheet.getpixel((4 + 16, 40 + 4)) == (255, 255, 255)
    # The empty cells of a short row stay white.
    assert sheet.getpixel((4 + 36 + 16, 40 + 16)) == (255, 255, 255)


def test_labels_add_a_column_and_transparency_shows_white() -> None:
    rows = [[_solid((0, 0, 0, 0), mode="RGBA")], [_solid((0, 0, 0, 255), mode="RGBA")]]
    plain = contact_sheet(rows, cell=24)
    labelled = contact_sheet(rows, labels=["chair/abc", "mug/def"], cell=24)
    assert labelled.width > plain.width and labelled.height == plain.height
    offset = labelled.width - plain.width
    assert labelled.getpixel((offset + 4 + 12, 4 + 12)) == (255, 255, 255)
    assert labelled.getpixel((offset + 4 + 12, 32 + 12)) == (0, 0, 0)
    label_area = labelled.crop((0, 4, offset, 28)).convert("L")
    assert label_area.getextrema()[0] < 128  # some text was drawn
    with pytest.raises(ValueError, match="labels"):
        contact_sheet(rows, labels=["one"])

"""Image input: every common file flavour arrives as upright 8-bit RGB of one size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sfi_cli.errors import SfiError
from sfi_cli.media.images import load_image, parse_size, resize_to


def test_exif_orientation_is_applied(tmp_path):
    # A 40x20 picture stored sideways with orientation 6 ("rotate 90 CW to view").
    stored = np.zeros((40, 20, 3), np.uint8)
    stored[:5] = 255  # bright band along the stored top edge
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = load_image(path)
    assert upright.shape == (20, 40, 3)
    assert upright[:, -5:].mean() > 200 and upright[:, :5].mean() < 50  # band now on the right


def test_alpha_is_laid_over_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    frame = load_image(path)
    assert frame.dtype == np.uint8 and frame.shape == (4, 4, 3)
    assert (frame[:2, :, 0] == 200).all() and (frame[2:] == 0).all()


def test_16_bit_gray_keeps_its_range(tmp_path):
    data = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(data).save(path)  # uint16 arrays become mode I;16
    frame = load_image(path)
    assert frame[0, :, 0].tolist() == [0, 128, 255]
    assert (frame[..., 0] == frame[..., 2]).all()


@pytest.mark.parametrize("mode", ["P", "CMYK", "L", "LA", "1"])
def test_other_modes_become_rgb(tmp_path, mode):
    source = Image.fromarray(np.full((6, 6, 3), 120, np.uint8)).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    source.save(path)
    frame = load_image(path)
    assert frame.shape == (6, 6, 3) and frame.dtype == np.uint8


def test_cover_fills_another_shape_without_bars():
    last = np.full((20, 40, 3), 255, np.uint8)  # wider than the 30x40 output
    covered = resize_to(last, (30, 40), "cover")
    assert covered.shape == (40, 30, 3)
    assert covered.min() == 255  # cover: cropped, no bars


def test_contain_adds_bars_and_stretch_fills():
    wide = np.full((20, 40, 3), 255, np.uint8)
    contained = resize_to(wide, (40, 40), "contain")
    assert contained[:5].max() == 0 and contained[18:22].min() == 255
    assert resize_to(wide, (40, 40), "stretch").min() == 255


@pytest.mark.parametrize("text", ["", "100", "0x10", "10x", "-5x5", "axb", "10x10x10"])
def test_bad_sizes_are_rejected(text):
    with pytest.raises(SfiError):
        parse_size(text)


def test_size_parses():
    assert parse_size("1280x720") == (1280, 720)

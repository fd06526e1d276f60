"""``wise_rl.data.images.load_image``: EXIF orientation and every PIL mode → the RGB a viewer shows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wise_rl.data.images import ImageError, load_image

RED, BLUE = (200, 0, 0), (0, 0, 200)


def oriented_jpeg(orientation: int = 6) -> bytes:
    """Stored 60×30: left half red, right half blue; EXIF says rotate 90° clockwise to show (Orientation 6)."""
    image = Image.new("RGB", (60, 30), RED)
    image.paste(BLUE, (30, 0, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def test_exif_orientation_6_is_shown_upright():
    shown = load_image(oriented_jpeg())
    assert shown.size == (30, 60) and shown.mode == "RGB"
    # clockwise: the stored left half (red) becomes the top half, the right half (blue) the bottom half
    top, bottom = np.asarray(shown)[10, 15], np.asarray(shown)[50, 15]
    assert top[0] > 150 and top[2] < 60 and bottom[2] > 150 and bottom[0] < 60


def test_every_source_form_reads_the_same(tmp_path):
    raw = oriented_jpeg()
    path = tmp_path / "a.jpg"
    path.write_bytes(raw)
    forms = [raw, str(path), path, {"bytes": raw, "path": None}, {"bytes": None, "path": str(path)},
             Image.open(io.BytesIO(raw))]
    arrays = [np.asarray(load_image(f)) for f in forms]
    assert all(a.shape == (60, 30, 3) and np.array_equal(a, arrays[0]) for a in arrays)


def _pixel(image: Image.Image) -> tuple[int, ...]:
    out = load_image(image)
    assert out.mode == "RGB"
    return tuple(int(v) for v in np.asarray(out)[0, 0])


@pytest.mark.parametrize("mode, value, expected", [
    ("I;16", 65535, (255,) * 3),
    ("I;16", 257 * 100, (100,) * 3),
    ("I", 257 * 100, (100,) * 3),  # 32-bit grayscale (how older PIL opens 16-bit PNGs): 16-bit intensities
    ("I", 70000, (255,) * 3),  # beyond 16 bits: clipped
    ("F", 0.5, (128,) * 3),  # float in 0..1
    ("F", 77.0, (77,) * 3),  # float beyond 1: 0..255
    ("L", 33, (33,) * 3),
    ("1", 1, (255,) * 3),
    ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ("CMYK", (255, 0, 0, 0), (0, 255, 255)),
    ("RGBA", (0, 0, 0, 0), (255, 255, 255)),  # fully transparent black → the white a viewer shows
    ("RGBA", (0, 0, 0, 255), (0, 0, 0)),
    ("RGBA", (0, 0, 0, 128), (127, 127, 127)),  # half over white
    ("LA", (0, 0), (255, 255, 255)),
    ("LA", (10, 255), (10, 10, 10)),
])
def test_modes(mode, value, expected):
    image = Image.new(mode, (4, 3), value)
    if mode == "I;16":  # Image.new cannot fill I;16 with a value above 255 reliably: build it from an array
        image = Image.fromarray(np.full((3, 4), value, dtype=np.uint16))
        assert image.mode.startswith("I;16")
    assert _pixel(image) == expected


def test_sixteen_bit_png_round_trip():
    buf = io.BytesIO()
    Image.fromarray(np.full((3, 4), 257 * 40, dtype=np.uint16)).save(buf, format="PNG")
    opened = Image.open(io.BytesIO(buf.getvalue()))
    assert opened.mode in ("I", "I;16")
    assert _pixel(opened) == (40, 40, 40)


def test_palette_with_transparency_is_composited_over_white():
    image = Image.new("P", (4, 3), 0)
    image.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    buf = io.BytesIO()
    image.save(buf, format="PNG", transparency=0)  # index 0 (black) is transparent
    out = np.asarray(load_image(buf.getvalue()))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (250, 0, 0)


def test_unreadable_sources_name_what_is_wrong(tmp_path):
    with pytest.raises(ImageError, match="no known image format"):
        load_image(b"not an image")
    with pytest.raises(ImageError, match="cannot read image file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="unreadable image"):
        load_image(oriented_jpeg()[:200])


def test_the_loaders_read_images_as_shown(tmp_path):
    """A LISA folder holding a 16-bit grayscale PNG and an RGBA PNG: the model images are the viewer's RGB."""
    import json

    from wise_rl.data.loaders import load_source

    folder = tmp_path / "lisa"
    folder.mkdir()
    Image.fromarray(np.full((30, 40), 257 * 40, dtype=np.uint16)).save(folder / "gray16.png")
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[:, :20] = (0, 0, 0, 255)  # left: opaque black; right: fully transparent black → white
    Image.fromarray(rgba, mode="RGBA").save(folder / "alpha.png")
    shapes = [{"label": "t", "points": [[2, 2], [10, 2], [10, 10], [2, 10]]}]
    for name in ("gray16", "alpha"):
        (folder / f"{name}.json").write_text(json.dumps({"text": ["q"], "shapes": shapes}))
    ds = load_source(folder, model_size=40)
    by_id = {r["id"]: np.asarray(r["image"].convert("RGB")) for r in ds}
    assert ds[0]["image"].mode == "RGB"
    assert abs(int(by_id["gray16"][15, 20, 0]) - 40) <= 1
    assert by_id["alpha"][15, 5].max() <= 2 and by_id["alpha"][15, 35].min() >= 253

"""Images as a viewer shows them, loaded one way everywhere (loaders, ``infer``, ``eval``, ``score``).

``load_image(src)`` takes a path, bytes, a ``{"bytes", "path"}`` dict (a ``datasets`` Image cell) or a PIL image
and returns an 8-bit RGB PIL image, fully decoded:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): a JPEG stored 60×30 with Orientation 6 comes back
  30×60, as viewers, browsers and ``cv2.imread`` show it. Annotations (LISA polygons, masks, image sizes) are drawn
  on the shown image, so every frame computation starts from this one.
* Modes: ``RGB`` unchanged; ``L``, ``1``, ``P`` without transparency, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` through
  PIL's own conversion; transparency (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, or a palette / gray / RGB
  ``transparency`` entry) is composited over white, the background a viewer or a web page shows — dropping the alpha
  instead would reveal whatever colour the transparent pixels happen to store (often black); 16-bit grayscale
  (``I;16*``) and 32-bit integer grayscale (``I``) are read as 16-bit intensities, 0..65535 → 0..255 (``v / 257``:
  a 16-bit PNG looks the same as its 8-bit version; values outside 0..65535 are clipped); 32-bit float (``F``) as
  intensities in 0..1 when its maximum is ≤ 1, else in 0..255 (clipped).

The loaders read cells through :func:`source_bytes` and convert through :func:`load_image`; they open the bytes
themselves only to check, without decoding every pixel, an image they pass through unchanged (already RGB,
nothing to orient).

Errors: :class:`ImageError` (a ``ValueError``) naming the source when it is not an image, is truncated or corrupt.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wise_rl.errors import ImageError  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112


def source_bytes(src: Any, base_dir: str | os.PathLike | None = None) -> tuple[bytes, str | None]:
    """(encoded bytes, path or None) of a path, bytes or ``{"bytes", "path"}`` cell. Raises :class:`ImageError`.

    A relative path resolves against ``base_dir`` (the loaders pass the data file's folder, or the
    ``save_to_disk`` folder): a file there wins even when the working directory holds one of the same name. Only
    when ``base_dir`` has none is the path read relative to the working directory, and that is logged (once per
    folder), never silent. Without ``base_dir`` (an in-memory dataset) the working directory is the base.
    """
    raw, path = None, None
    if src is None:
        raise ImageError("missing image", code="missing_value")
    if isinstance(src, dict):
        raw, path = src.get("bytes"), src.get("path")
    elif isinstance(src, (bytes, bytearray)):
        raw = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        path = src
    else:
        raise ImageError(f"unsupported image value of type {type(src).__name__}")
    if raw is not None:
        return bytes(raw), None if path is None else str(path)
    if not path:
        raise ImageError("image has neither bytes nor path", code="missing_value")
    p = _resolve_path(Path(path).expanduser(), base_dir)
    try:
        return p.read_bytes(), str(path)
    except OSError as exc:
        raise ImageError(f"cannot read image file {str(path)!r}: {exc}") from exc


_WARNED_CWD: set[str] = set()


def _resolve_path(p: Path, base_dir: str | os.PathLike | None) -> Path:
    """``p`` itself if absolute or without ``base_dir``; else ``base_dir / p`` when that exists; else ``p`` relative
    to the working directory when that exists (logged); else ``base_dir / p`` (whose read error names it)."""
    if p.is_absolute() or base_dir is None:
        return p
    beside = Path(base_dir) / p
    if beside.exists() or not p.exists():
        return beside
    if str(base_dir) not in _WARNED_CWD:
        _WARNED_CWD.add(str(base_dir))
        logger.warning("image %r is not beside the data (%s); reading it relative to the working directory %s",
                       str(p), base_dir, Path.cwd())
    return p


def open_image(src: Any) -> Image.Image:
    """The decoded PIL image of ``src`` as stored (no orientation, mode unchanged). Raises :class:`ImageError`."""
    if isinstance(src, Image.Image):
        return src
    raw, path = source_bytes(src)
    where = f"file {path!r}" if path else f"{len(raw)} bytes"
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except UnidentifiedImageError as exc:
        raise ImageError(f"unreadable image: {where} in no known image format") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on truncated / corrupt data
        raise ImageError(f"unreadable image: {where} ({type(exc).__name__}: {exc})") from exc
    return image


def needs_conversion(image: Image.Image) -> bool:
    """True unless the image is already shown as stored: RGB without an EXIF orientation to apply."""
    return (image.mode != "RGB" or "transparency" in image.info
            or image.getexif().get(ORIENTATION_TAG, 1) not in (1, None))


def _over_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _gray(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """The 8-bit RGB rendering of any PIL mode (see the module doc for each), orientation left as is."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _over_white(image)
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (32-bit)
        return _gray(np.asarray(image, dtype=np.float64).clip(0, 65535) / 257.0)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray(values * 255.0 if values.size and values.max() <= 1.0 else values)
    return image.convert("RGB")


def load_image(src: Any) -> Image.Image:
    """``src`` (path, bytes, ``{"bytes", "path"}``, PIL) → the RGB image a viewer shows: EXIF orientation applied,
    any mode converted (module doc). Raises :class:`ImageError` on an unreadable source."""
    image = open_image(src)
    if not needs_conversion(image):
        return image
    oriented = ImageOps.exif_transpose(image)
    return to_rgb(oriented if oriented is not None else image)

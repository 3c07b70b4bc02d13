"""Reading images the way a user expects: any PIL-readable file -> uint8 RGB [H, W, 3] (no torch).

EXIF orientation is applied (phones store portrait photos rotated); grayscale is replicated to three channels;
alpha is dropped (as detectron2's read_image does); 16-bit images are scaled to 8 bits (value >> 8); palette and
CMYK images are converted. An unreadable file is one sentence naming it.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from m2f.errors import ImageError, M2FWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """An in-memory image (HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8 or uint16) -> uint8 RGB [H, W, 3]."""
    a = np.asarray(array)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ImageError(f"images must be uint8 or uint16 arrays, not {a.dtype} (scale floats to 0..255 first)")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise ImageError(f"an image must be HxW, HxWx1, HxWx3 or HxWx4, not {list(a.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"an image of size {a.shape[0]}x{a.shape[1]} has no pixels")
    return np.ascontiguousarray(a)


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] from a file, EXIF orientation applied."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path} is an animated image of {frames} frames; only the first is used (convert it "
                              f"to a video to run every frame)", M2FWarning, stacklevel=2)
            return _pil_to_rgb8(im)
    except FileNotFoundError:
        raise ImageError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e.__class__.__name__} ({str(e)[:120]})") from None


def decode_image(data: bytes, max_pixels: int | None = None, what: str = "the image") -> np.ndarray:
    """uint8 RGB [H, W, 3] from an encoded image in memory (PNG, JPEG, … as a file would hold it).

    max_pixels: refuse larger images from their header, before decoding them (a server's guard against a small
    file that decodes to gigabytes)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{what} is empty (0 bytes); send the bytes of an encoded image file (PNG, JPEG, …)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(f"{what} is {height}x{width} = {width * height} pixels, more than the {max_pixels} "
                                 f"this server accepts; send a smaller image")
            return _pil_to_rgb8(im)
    except Image.DecompressionBombError as e:  # PIL's own limit, met on opening, before the check above
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{found.group(1)} pixels" if found else "more pixels than PIL decodes"
        limit = f"the {max_pixels} this server accepts" if max_pixels is not None else "PIL's safety limit"
        raise ImageError(f"{what} is {pixels}, more than {limit}; send a smaller image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:  # PIL raises all four for bad bytes
        kind = "not an image PIL can read" if isinstance(e, UnidentifiedImageError) else \
            f"a broken image: {e.__class__.__name__} ({str(e)[:120]})"
        raise ImageError(f"{what} ({len(data)} bytes) is {kind}; send the bytes of an encoded image file (PNG, "
                         f"JPEG, …)") from None


def _pil_to_rgb8(im) -> np.ndarray:
    """An open PIL image -> uint8 RGB [H, W, 3]: EXIF orientation, 16-bit, palette and CMYK handled."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(im).astype(np.uint32)
        return to_rgb8((array >> 8).clip(0, 255).astype(np.uint8) if array.max() > 255 else array.astype(np.uint8))
    if im.mode not in ("RGB", "L", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    return to_rgb8(np.asarray(im))

"""Safe image decoding, and resizing to a working size with an exact way back.

Coordinate convention, used everywhere in localmatch: a point ``(x, y)`` is in pixels of the
ORIGINAL image (after its EXIF orientation is applied), x to the right, y down, with the origin at
the CENTRE of the top-left pixel (OpenCV's convention): the pixel in row ``i``, column ``j`` has its
centre at ``(j, i)``.

Decoding goes through Pillow, which reads the header (and so the pixel count) before it decodes,
applies EXIF orientation, and knows 16-bit, palette, alpha and CMYK images (16-bit colour, which it
reads at 8 bits, is decoded again by OpenCV), and HEIF/HEIC through the optional pillow-heif plugin
(in a child process: :mod:`localmatch.heif`). TIFFs whose samples Pillow cannot read (float or signed
colour, 64-bit float, 32-bit integers) are decoded by OpenCV once their size has been read from their
tags. Every failure a file can cause is turned into one :class:`~localmatch.errors.ImageError` that names
the file and the reason.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io as _io
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps
import PIL.TiffImagePlugin

from localmatch.errors import ImageError

log = logging.getLogger(__name__)

#: Default limit on width x height, against decompression bombs (Pillow's own hard limit is 2x89 MP).
DEFAULT_MAX_PIXELS = 100_000_000
#: Default long side of the working image that features are extracted from.
DEFAULT_MAX_SIDE = 1024


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image at its original resolution.

    Attributes:
        pixels: ``(H, W, 3) uint8`` RGB, EXIF orientation applied, alpha composited over white.
        source: what it came from, for messages: a path, ``"<bytes>"`` or ``"<array>"``.
    """

    pixels: np.ndarray
    source: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in original pixels."""
        return self.width, self.height

    def gray(self) -> np.ndarray:
        """``(H, W) uint8`` luminance (exact for images that were grayscale to begin with)."""
        return cv2.cvtColor(self.pixels, cv2.COLOR_RGB2GRAY)


#: Anything :func:`load_image` accepts. Arrays are RGB (or gray), ``uint8``, ``uint16`` or float (in [0, 1],
#: or stretched there from their own minimum and maximum).
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Image]


def describe_source(source: ImageSource) -> str:
    """A short text naming an image source in messages and JSON output."""
    if isinstance(source, Image):
        return source.source
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, np.ndarray):
        return "<array>"
    return "<bytes>"


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image from a path, encoded bytes or an array.

    Args:
        source: a file path; the bytes of an encoded file (JPEG, PNG, PPM/PGM, TIFF, WebP, ...);
            an ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array in RGB(A) order; or an
            :class:`Image`, returned as it is.
        max_pixels: refuse images with more than this many pixels (checked before decoding).

    Raises:
        ImageError: the source is missing, a directory, empty, truncated, corrupt, not an image, or
            over ``max_pixels``. The message names the source and the reason.
    """
    if isinstance(source, Image):
        return source
    if isinstance(source, np.ndarray):
        return Image(_array_to_rgb8(source, "<array>", max_pixels), "<array>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), "<bytes>", max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ImageError(path, "no such file")
        if os.path.isdir(path):
            raise ImageError(path, "is a directory, not an image file")
        if os.path.getsize(path) == 0:
            raise ImageError(path, "empty file (0 bytes)")
        try:
            with open(path, "rb") as f:
                return Image(_decode(f, path, max_pixels), path)
        except OSError as e:  # permission denied, I/O error while reading
            raise ImageError(path, f"cannot read: {e.strerror or e}") from e
    raise TypeError(f"cannot load an image from {type(source).__name__}; give a path, bytes or an array")


def crop(image: Image, box) -> tuple[Image, tuple[int, int]]:
    """The part of ``image`` inside ``box``, and the offset ``(x0, y0)`` of its top-left pixel in ``image``.

    ``box`` is ``(x0, y0, x1, y1)`` in ``image``'s pixels, rounded to whole pixels: columns ``x0 .. x1 - 1``
    and rows ``y0 .. y1 - 1`` are kept (the convention of PIL's ``crop``, which the Revisited Oxford and
    Paris query boxes follow); parts outside the image are cut off. A point ``p`` of the crop is
    ``p + offset`` in ``image``.

    Raises:
        ImageError: the box is not four finite numbers, or holds no pixel of the image.
    """
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.shape != (4,) or not np.isfinite(values).all():
        raise ImageError(image.source, f"a box is four finite numbers (x0, y0, x1, y1), not {box!r}")
    x0, y0, x1, y1 = (int(v) for v in np.round(values))
    x0, x1 = max(x0, 0), min(x1, image.width)
    y0, y1 = max(y0, 0), min(y1, image.height)
    if x1 <= x0 or y1 <= y0:
        shown = ", ".join(f"{v:g}" for v in values)
        raise ImageError(image.source, f"the box [{shown}] holds no pixel of the {image.width}x{image.height} image")
    return Image(np.ascontiguousarray(image.pixels[y0:y1, x0:x1]), image.source), (x0, y0)


def decode_bytes(data: bytes, source: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an encoded file already read into memory; ``source`` names it in errors."""
    if not data:
        raise ImageError(source, "empty (0 bytes)")
    return Image(_decode(_io.BytesIO(data), source, max_pixels), source)


#: Major brands of the ISO base media file ("ftyp" box) that mark a HEIF image: HEIC, what phones save.
#: (AVIF, HEIF's AV1 form, is Pillow's own since Pillow 11.2.)
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def _head(fileobj, size: int) -> bytes:
    """The first ``size`` bytes of ``fileobj`` (fewer in a shorter file), which is left at its start."""
    fileobj.seek(0)
    head = fileobj.read(size)
    fileobj.seek(0)
    return head


def _is_heif(fileobj) -> bool:
    head = _head(fileobj, 12)
    return len(head) == 12 and head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


#: The pillow-heif plugins, in the order they are tried.
HEIF_PLUGINS = ("pi_heif", "pillow_heif")


@functools.lru_cache(maxsize=None)
def _register_heif_opener() -> bool:
    """Let Pillow open HEIF files through the pillow-heif plugin, where it is installed (once per process):
    ``pi-heif`` (its decoder alone, LGPL; the ``heif`` extra) or ``pillow-heif`` (with an encoder, GPL)."""
    for name in HEIF_PLUGINS:
        try:
            plugin = importlib.import_module(name)
        except ImportError:
            continue
        plugin.register_heif_opener()  # HEIF's own rotation is applied, and EXIF orientation reset to 1
        return True
    return False


#: How a TIFF file starts: little- and big-endian, classic and BigTIFF.
TIFF_PREFIXES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_tiff(fileobj) -> bool:
    return _head(fileobj, 4) in TIFF_PREFIXES


def _open(fileobj, source: str) -> PIL.Image.Image | None:
    """Pillow's image (header read, pixels not decoded yet); HEIF through pillow-heif. None for a TIFF that
    Pillow does not know how to read (:func:`_decode_tiff_with_opencv` decodes it)."""
    try:
        return PIL.Image.open(fileobj)
    except PIL.UnidentifiedImageError:
        if _is_tiff(fileobj):
            return None
        if not _is_heif(fileobj):
            raise ImageError(source, "not an image (unrecognised or corrupt header)") from None
    if not _register_heif_opener():
        raise ImageError(source, "a HEIF (HEIC) image, which Pillow decodes only with the pillow-heif plugin: "
                                 "pip install pi-heif (localmatch's `heif` extra)")
    try:
        return PIL.Image.open(fileobj)
    except PIL.UnidentifiedImageError:
        raise ImageError(source, "a corrupt HEIF (HEIC) image: pillow-heif cannot read its header") from None


@functools.lru_cache(maxsize=None)
def _heif_plugin_installed() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in HEIF_PLUGINS)


def _decode(fileobj, source: str, max_pixels: int) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB of an encoded file; HEIF in a child process (:mod:`localmatch.heif`)."""
    if _is_heif(fileobj) and _heif_plugin_installed():
        from localmatch.heif import decode_in_child

        return decode_in_child(fileobj.read(), source, max_pixels)
    return decode_here(fileobj, source, max_pixels)


#: ``warnings.catch_warnings`` swaps process-wide state and restores what it saw on entry, so two threads
#: decoding at once (a pair is decoded side by side) could leave one's filters installed for good: decoding
#: holds this lock. It costs the overlap of two decodes (about 8 ms per 1600x1200 JPEG against about 100 ms
#: of SIFT extraction).
_WARNINGS_LOCK = threading.Lock()


def decode_here(fileobj, source: str, max_pixels: int) -> np.ndarray:
    """:func:`_decode` in this process, whatever the format (the HEIF child calls it).

    What Pillow warns about while decoding (a truncated EXIF block, a broken tag) is logged with the file's
    name, since Pillow's own warnings do not say which file they are about.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # We apply our own limit; Pillow's warning would only repeat it.
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        try:
            return _decode_with_pillow(fileobj, source, max_pixels)
        finally:
            for warning in caught:
                log.warning("%s: %s (%s from the decoder)", source, warning.message, warning.category.__name__)


def _check_size(width: int, height: int, source: str, max_pixels: int | None) -> None:
    """Refuse an image with no pixels, or with more than ``max_pixels`` (None: no limit)."""
    if width <= 0 or height <= 0:
        raise ImageError(source, f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            source, f"{width}x{height} = {width * height} pixels is over the limit of {max_pixels} (max_pixels)"
        )


def _decode_with_pillow(fileobj, source: str, max_pixels: int) -> np.ndarray:
    """:func:`decode_here`'s work, under its lock: header checks, pixels, 16-bit colour, EXIF orientation."""
    try:
        img = _open(fileobj, source)
    except ImageError:
        raise
    except PIL.Image.DecompressionBombError as e:
        raise ImageError(source, f"too many pixels (decompression bomb?): {e}") from None
    except Exception as e:  # OSError, SyntaxError, ValueError; RuntimeError from the AVIF plugin...
        raise ImageError(source, f"corrupt image header: {e}") from None
    if img is None:
        return _decode_tiff_with_opencv(fileobj, source, max_pixels)
    _check_size(*img.size, source, max_pixels)
    colour_16_bit = _is_16_bit_colour(img)
    try:
        img.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... on bad data
        raise ImageError(source, f"corrupt or truncated image data: {e}") from None
    if colour_16_bit:
        pixels = _decode_16_bit_colour(fileobj, img, source)
        if pixels is not None:
            return _array_to_rgb8(pixels, source, None)
    try:
        img = PIL.ImageOps.exif_transpose(img)
    except Exception as e:  # a broken EXIF block must not cost the pixels
        log.warning("%s: EXIF orientation ignored (%s)", source, e)
    return _pil_to_rgb8(img, source)


def _is_16_bit_colour(img: PIL.Image.Image) -> bool:
    """Whether ``img`` (opened, not loaded) is a 16-bit RGB(A) file, which Pillow decodes to 8 bits per
    channel by keeping the high byte: 10- or 12-bit data stored in 16 bits would come out nearly black."""
    tile = getattr(img, "tile", None)  # an opened file's (PIL.ImageFile) decoder list
    if img.mode not in ("RGB", "RGBA") or not tile:
        return False
    rawmode = tile[0][3]  # PNG: the raw mode; TIFF: a tuple that starts with it
    rawmode = rawmode[0] if isinstance(rawmode, tuple) and rawmode else rawmode
    return isinstance(rawmode, str) and ";16" in rawmode


#: EXIF orientation -> the transposition that undoes it (``PIL.ImageOps.exif_transpose``'s table).
_EXIF_TRANSPOSE = {2: PIL.Image.Transpose.FLIP_LEFT_RIGHT, 3: PIL.Image.Transpose.ROTATE_180,
                   4: PIL.Image.Transpose.FLIP_TOP_BOTTOM, 5: PIL.Image.Transpose.TRANSPOSE,
                   6: PIL.Image.Transpose.ROTATE_270, 7: PIL.Image.Transpose.TRANSVERSE,
                   8: PIL.Image.Transpose.ROTATE_90}


def _bgr_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's ``(H, W, 3 or 4)`` BGR(A) samples in RGB(A) order, of any dtype (``cv2.cvtColor`` takes 8- and
    16-bit integers and 32-bit floats only)."""
    return pixels[..., [2, 1, 0, 3][:pixels.shape[2]]]


def _decode_16_bit_colour(fileobj, img: PIL.Image.Image, source: str) -> np.ndarray | None:
    """``(H, W, 3 or 4) uint16`` RGB(A) of a 16-bit file that Pillow has decoded (so the data is sound),
    decoded again by OpenCV at full depth, EXIF orientation applied; None where OpenCV cannot."""
    fileobj.seek(0)
    try:
        pixels = cv2.imdecode(np.frombuffer(fileobj.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[:2] != (img.height, img.width):
        log.warning("%s: 16-bit colour read at 8 bits (OpenCV could not decode it)", source)
        return None
    pixels = _bgr_to_rgb(pixels)
    try:
        transpose = _EXIF_TRANSPOSE.get(img.getexif().get(0x0112, 1))
    except Exception as e:  # a broken EXIF block must not cost the pixels
        log.warning("%s: EXIF orientation ignored (%s)", source, e)
        transpose = None
    if transpose is not None:  # channel by channel: Pillow transposes 16-bit single-channel images
        pixels = np.stack([np.asarray(PIL.Image.fromarray(np.ascontiguousarray(pixels[..., c])).transpose(transpose))
                           for c in range(pixels.shape[2])], axis=2)
    return pixels


def _tiff_size(fileobj, source: str) -> tuple[int, int]:
    """``(width, height)`` of a TIFF's first image, read from its tags (Pillow's parser) without decoding."""
    head = _head(fileobj, 16)
    head = head[:16] if head[2:3] == b"+" else head[:8]  # BigTIFF's offset is 8 bytes, a classic TIFF's 4
    try:
        tags = PIL.TiffImagePlugin.ImageFileDirectory_v2(head)
        fileobj.seek(tags.next)
        tags.load(fileobj)
        return int(tags[256]), int(tags[257])  # ImageWidth, ImageLength
    except KeyError as e:
        raise ImageError(source, f"corrupt TIFF header: tag {e} (the image's size) is missing") from None
    except Exception as e:  # struct.error, OSError, ValueError on a damaged directory
        raise ImageError(source, f"corrupt TIFF header: {e}") from None
    finally:
        fileobj.seek(0)


def _decode_tiff_with_opencv(fileobj, source: str, max_pixels: int) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB of a TIFF whose samples Pillow cannot read (float or signed colour, 64-bit
    float, 32-bit integers), decoded by OpenCV once its size is checked against ``max_pixels``. OpenCV
    applies the TIFF's orientation tag itself. Integers other than 8 and 16 bits are stretched from their own
    range, like float samples."""
    width, height = _tiff_size(fileobj, source)
    _check_size(width, height, source, max_pixels)
    logging_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # libtiff's complaints: ours says it all
    try:  # decode_here's lock keeps another decode from restoring the level early
        pixels = cv2.imdecode(np.frombuffer(fileobj.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pixels = None
    finally:
        cv2.utils.logging.setLogLevel(logging_level)
    if pixels is None:
        raise ImageError(source, "a TIFF that neither Pillow nor OpenCV can decode (corrupt or truncated data, "
                                 "or a sample format neither knows)")
    if pixels.shape[0] * pixels.shape[1] != width * height:  # the size checked must be the size decoded
        raise ImageError(source, f"corrupt TIFF: its tags give {width}x{height} pixels, its data "
                                 f"{pixels.shape[1]}x{pixels.shape[0]}")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):  # OpenCV reads 1, 3 or 4 samples, colour as BGR(A)
        pixels = _bgr_to_rgb(pixels)
    if pixels.dtype.kind in "iu" and pixels.dtype not in (np.uint8, np.uint16):
        pixels = pixels.astype(np.float64)
    return _array_to_rgb8(np.ascontiguousarray(pixels), source, None)


def _pil_to_rgb8(img: PIL.Image.Image, source: str) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit (or 32-bit integer) grayscale; integers beyond 16 bits are stretched like float data
        arr = np.asarray(img)
        inside = arr.min() >= 0 and arr.max() <= 65535  # the image has pixels: checked before decoding
        return _array_to_rgb8(arr.astype(np.uint16) if inside else arr.astype(np.float32), source, None)
    if mode == "F":
        return _array_to_rgb8(np.asarray(img, np.float32), source, None)  # 32-bit float (scientific TIFFs)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or img.mode == "RGBA":
        rgba = img.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB")), dtype=np.uint8)


def _array_to_rgb8(arr: np.ndarray, source: str, max_pixels: int | None) -> np.ndarray:
    """Validate an array and turn it into ``(H, W, 3) uint8`` RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageError(source, f"array of shape {arr.shape} is not an image; expected (H, W), (H, W, 3) or (H, W, 4)")
    _check_size(arr.shape[1], arr.shape[0], source, max_pixels)
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = _16_to_8_bits(arr)
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(source, "pixels hold NaN or infinite values")
        out = _float_to_8_bits(arr.astype(np.promote_types(arr.dtype, np.float32), copy=False))  # float64 stays
    else:
        raise ImageError(source, f"unsupported array dtype {arr.dtype}; use uint8, uint16 or float")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        out = (out[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def _16_to_8_bits(arr: np.ndarray) -> np.ndarray:
    """16-bit pixels as 8-bit ones. Cameras store 10, 12 or 14 bits in 16-bit files, and scaled from 16
    bits such data is nearly black (12 bits: 0-16 of 255, where SIFT finds no feature at all), so the
    colour channels are scaled from the smallest full range of 8, 10, 12, 14 or 16 bits that holds their
    maximum (an alpha channel from its own)."""
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.concatenate([_16_to_8_bits(arr[..., :3]), _16_to_8_bits(arr[..., 3:])], axis=2)
    bits = next(b for b in (8, 10, 12, 14, 16) if int(arr.max()) < 2 ** b)
    return (arr.astype(np.float32) * (255.0 / (2 ** bits - 1)) + 0.5).astype(np.uint8)


def _float_to_8_bits(arr: np.ndarray) -> np.ndarray:
    """Float pixels as 8-bit ones, from [0, 1] or their own range (:func:`_unit_range`); an alpha channel
    from its own, as :func:`_16_to_8_bits` does."""
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.concatenate([_float_to_8_bits(arr[..., :3]), _float_to_8_bits(arr[..., 3:])], axis=2)
    return (_unit_range(arr).astype(np.float32) * 255.0 + 0.5).astype(np.uint8)


def _unit_range(arr: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1]: as they are when they lie there, else stretched from their own minimum and
    maximum. Float data has no fixed range (0-255 from ``astype(np.float32)``, scientific TIFFs), and
    clipping it would give a white or black image."""
    low, high = float(arr.min()), float(arr.max())
    if low >= 0.0 and high <= 1.0:
        return arr
    # Halved first: the span of values near the type's largest (corrupt or scientific data) overflows it.
    half_span = max(high / 2 - low / 2, 1e-12)
    return (arr * arr.dtype.type(0.5) - arr.dtype.type(low / 2)) / arr.dtype.type(half_span)


@dataclass(frozen=True, eq=False)
class Resized:
    """An image resized to the working size, and the exact map back to original pixels.

    Attributes:
        pixels: the working image, ``(h, w)`` or ``(h, w, C)``, same dtype as the input.
        scale: ``(sx, sy)`` = working size / original size along x and y.
    """

    pixels: np.ndarray
    scale: tuple[float, float]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` working-image points to original pixels (pixel-centre convention)."""
        sx, sy = self.scale
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        out = np.empty_like(points)
        out[:, 0] = (points[:, 0] + 0.5) / sx - 0.5
        out[:, 1] = (points[:, 1] + 0.5) / sy - 0.5
        return out


def working_scale(size: tuple[int, int], max_side: int | None = DEFAULT_MAX_SIDE) -> float:
    """Working size / original size of an image of ``(width, height)`` whose long side is shrunk to at most
    ``max_side`` (``None`` or ``0``: 1, the original size; never above 1)."""
    return 1.0 if not max_side or max(size) <= max_side else max_side / max(size)


def resize_to_working(pixels: np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE, *, multiple: int = 1) -> Resized:
    """Shrink an image so its long side is at most ``max_side`` (never enlarges it).

    ``max_side=None`` or ``0`` keeps the original size. With ``multiple > 1`` both sides are then rounded
    to the nearest multiple of it (at least one multiple), as networks with a fixed stride need, so a side
    can end up to ``multiple / 2`` pixels over ``max_side`` or its original length (a 600-pixel side is
    608 for a stride of 16). The aspect ratio is kept up to rounding; the returned per-axis scales are the
    exact ones, so :meth:`Resized.to_original` is exact.
    """
    height, width = pixels.shape[:2]
    s = working_scale((width, height), max_side)
    new_w, new_h = max(1, round(width * s)), max(1, round(height * s))
    if multiple > 1:
        new_w = max(multiple, round(new_w / multiple) * multiple)
        new_h = max(multiple, round(new_h / multiple) * multiple)
    if (new_w, new_h) == (width, height):
        return Resized(pixels, (1.0, 1.0))
    interpolation = cv2.INTER_AREA if new_w <= width and new_h <= height else cv2.INTER_LINEAR
    small = cv2.resize(pixels, (new_w, new_h), interpolation=interpolation)
    return Resized(small, (new_w / width, new_h / height))

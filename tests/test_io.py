"""Image decoding: formats, orientation, bit depth, alpha, palette, CMYK, limits, bad input."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import struct
import subprocess
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.TiffImagePlugin
import pytest
import skimage.data

from localmatch import ImageError, load_image
from localmatch.io import Image, crop, decode_bytes, resize_to_working


@pytest.fixture(scope="module")
def photo(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut.pixels[100:301, 50:277])  # 227 x 201, odd sizes


def _save(tmp_path, array_or_image, name, **kwargs):
    img = array_or_image if isinstance(array_or_image, PIL.Image.Image) else PIL.Image.fromarray(array_or_image)
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


@pytest.mark.parametrize("name", ["x.png", "x.ppm", "x.tif", "x.webp"])
def test_lossless_formats_decode_exactly(tmp_path, photo, name):
    kwargs = {"lossless": True} if name.endswith("webp") else {}
    img = load_image(_save(tmp_path, photo, name, **kwargs))
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == photo.shape
    np.testing.assert_array_equal(img.pixels, photo)


def test_jpeg_and_pgm(tmp_path, photo):
    jpg = load_image(_save(tmp_path, photo, "x.jpg", quality=95))
    assert np.abs(jpg.pixels.astype(int) - photo).mean() < 3
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    pgm = load_image(_save(tmp_path, gray, "x.pgm"))
    assert pgm.pixels.shape == photo.shape
    np.testing.assert_array_equal(pgm.gray(), gray)  # grayscale survives the round trip exactly


def test_path_bytes_and_array_give_the_same_pixels(tmp_path, photo):
    path = _save(tmp_path, photo, "x.png")
    a, b, c = load_image(path), load_image(path.read_bytes()), load_image(photo)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.pixels, c.pixels)
    assert a.source == str(path) and b.source == "<bytes>" and c.source == "<array>"
    assert load_image(a) is a


def test_exif_orientation_is_applied(tmp_path, photo):
    img = PIL.Image.fromarray(photo)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (photo.shape[0], photo.shape[1])  # width and height swapped
    expected = np.rot90(photo, k=-1)
    assert np.abs(loaded.pixels.astype(int) - expected).mean() < 3


def test_16_bit_gray_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(3, axis=0)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), values)
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels[0, :, 0], [0, 1, 128, 255])


def test_16_bit_rgb_png_and_tiff(tmp_path):
    rgb16 = np.zeros((5, 7, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 32896, 0
    for name in ("c16.png", "c16.tif"):
        path = tmp_path / name
        assert cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
        img = load_image(path)
        np.testing.assert_allclose(img.pixels[0, 0], [255, 128, 0], atol=1)


def _png_with_exif_orientation(png: bytes, orientation: int) -> bytes:
    """``png`` with an eXIf chunk holding ``orientation`` inserted after its header chunk."""
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes()
    body = body[6:] if body.startswith(b"Exif\x00\x00") else body
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end_of_header = 8 + 8 + 13 + 4  # signature, IHDR length + type, IHDR data, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def test_10_and_12_bit_data_in_16_bit_files_is_not_nearly_black(tmp_path, photo):
    """Scaled from 16 bits, 12-bit camera data would be 0-16 of 255, where SIFT finds nothing."""
    import localmatch

    for bits in (10, 12):
        stored = (photo.astype(np.int64) * (2 ** bits - 1) // 255).astype(np.uint16)
        gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        gray_stored = (gray.astype(np.int64) * (2 ** bits - 1) // 255).astype(np.uint16)
        assert cv2.imwrite(str(tmp_path / "g.png"), gray_stored)
        assert np.abs(load_image(tmp_path / "g.png").gray().astype(int) - gray).max() <= 1
        for name in ("c.png", "c.tif"):  # Pillow reads 16-bit colour at 8 bits: these go through OpenCV
            assert cv2.imwrite(str(tmp_path / name), stored[..., ::-1])
            assert np.abs(load_image(tmp_path / name).pixels.astype(int) - photo).max() <= 1, name
        assert np.abs(load_image(stored).pixels.astype(int) - photo).max() <= 1
        assert len(localmatch.extract(tmp_path / "c.png")) > 200


def test_16_bit_colour_keeps_exif_orientation_and_alpha(tmp_path, photo):
    stored = (photo.astype(np.int64) * 4095 // 255).astype(np.uint16)
    ok, png = cv2.imencode(".png", stored[..., ::-1])
    path = tmp_path / "rotated.png"
    path.write_bytes(_png_with_exif_orientation(png.tobytes(), 6))  # 6: shown turned 90 degrees clockwise
    loaded = load_image(path)
    assert loaded.size == (photo.shape[0], photo.shape[1])
    assert np.abs(loaded.pixels.astype(int) - np.rot90(photo, k=-1)).max() <= 1
    rgba = np.concatenate([stored[..., ::-1], np.full(stored.shape[:2] + (1,), 65535, np.uint16)], axis=2)
    rgba[:10, :, 3] = 0  # a transparent band, composited over white
    assert cv2.imwrite(str(tmp_path / "a.png"), rgba)
    pixels = load_image(tmp_path / "a.png").pixels
    assert (pixels[:10] == 255).all() and np.abs(pixels[10:].astype(int) - photo[10:]).max() <= 1
    with pytest.raises(ImageError, match="cut.png.*corrupt or truncated"):
        (tmp_path / "cut.png").write_bytes(png.tobytes()[: len(png) // 2])
        load_image(tmp_path / "cut.png")


def test_float_tiff_is_stretched_from_its_own_range(tmp_path):
    values = np.array([[0.0, 0.5, 1.0, 0.25]], np.float32).repeat(2, axis=0)
    for name, stored in (("unit.tif", values), ("wide.tif", values * 4000.0 - 1000.0)):
        PIL.Image.fromarray(stored).save(tmp_path / name)
        np.testing.assert_array_equal(load_image(tmp_path / name).pixels[..., 0], [[0, 128, 255, 64]] * 2)
    # values near float32's largest: their span overflows float32, which gave NaN pixels
    PIL.Image.fromarray(np.array([[-3.4e38, 0.0, 3.4e38]], np.float32)).save(tmp_path / "extreme.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "extreme.tif").pixels[..., 0], [[0, 128, 255]])
    PIL.Image.fromarray(np.array([[1.0, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ImageError, match="nan.tif.*NaN"):
        load_image(tmp_path / "nan.tif")


def _tiff(pixels: np.ndarray, orientation: int = 1) -> bytes:
    """An uncompressed little-endian TIFF of ``(H, W)`` or ``(H, W, C)`` pixels of any dtype, with an
    orientation tag: Pillow writes neither float colour nor signed samples."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = pixels.shape
    body = np.ascontiguousarray(pixels, pixels.dtype.newbyteorder("<")).tobytes()
    head = b"II*\x00" + struct.pack("<I", 8)
    tags = PIL.TiffImagePlugin.ImageFileDirectory_v2(head)
    values = {256: width, 257: height, 258: (8 * pixels.itemsize,) * channels, 259: 1,
              262: 2 if channels >= 3 else 1, 273: 0,  # strip offset: Pillow makes it point past the directory
              274: orientation, 277: channels, 278: height, 279: len(body),
              339: ({"u": 1, "i": 2, "f": 3}[pixels.dtype.kind],) * channels}
    if channels in (2, 4):
        values[338] = 2  # ExtraSamples: unassociated alpha
    for tag, value in values.items():
        tags[tag] = value
    return head + tags.tobytes(8) + body


def _stretched(values: np.ndarray) -> np.ndarray:
    """What localmatch makes of float (or wide integer) samples: stretched from their own range to 0-255."""
    values = values.astype(np.float64)
    return np.round((values - values.min()) / (values.max() - values.min()) * 255)


@pytest.mark.parametrize("kind", ["float32 rgb", "float64 gray", "int16 rgb", "int32 rgb", "uint32 rgb",
                                  "float32 rgba"])
def test_tiffs_pillow_cannot_read_are_decoded_by_opencv(tmp_path, photo, kind):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    samples = {"float32 rgb": photo / np.float32(255), "float64 gray": gray * 3.5 - 100.0,
               "int16 rgb": photo.astype(np.int16) * 100 - 12000, "int32 rgb": photo.astype(np.int32) * 70000,
               "uint32 rgb": photo.astype(np.uint32) * 70000,
               "float32 rgba": np.dstack([photo / np.float32(255), np.ones(photo.shape[:2], np.float32)])}[kind]
    dtype = {"float32": np.float32, "float64": np.float64, "int16": np.int16, "int32": np.int32,
             "uint32": np.uint32}[kind.split()[0]]
    path = tmp_path / "x.tif"
    path.write_bytes(_tiff(samples.astype(dtype)))
    with pytest.raises(PIL.UnidentifiedImageError):  # what this test is about: Pillow cannot read these
        PIL.Image.open(path)
    expected = photo if kind.endswith("rgb") or kind.endswith("rgba") else np.dstack([gray] * 3)
    if kind.split()[0] in ("float64", "int16", "int32", "uint32"):  # outside [0, 1]: stretched
        colour = samples if samples.ndim == 3 else np.dstack([samples] * 3)
        expected = _stretched(colour)
    decoded = load_image(path).pixels
    assert decoded.shape == photo.shape
    assert np.abs(decoded.astype(int) - expected).max() <= 1, kind


def test_opencv_tiffs_keep_orientation_alpha_and_limits(tmp_path, photo):
    unit = photo / np.float32(255)
    (tmp_path / "rotated.tif").write_bytes(_tiff(unit, orientation=6))  # 6: shown turned 90 degrees clockwise
    assert np.abs(load_image(tmp_path / "rotated.tif").pixels.astype(int) - np.rot90(photo, k=-1)).max() <= 1
    # the alpha of float samples is stretched from its own range, not from the colour's
    alpha = np.ones(photo.shape[:2], np.float32)
    alpha[:10] = 0  # a transparent band, composited over white
    (tmp_path / "alpha.tif").write_bytes(_tiff(np.dstack([unit * 1000, alpha])))
    pixels = load_image(tmp_path / "alpha.tif").pixels
    assert (pixels[:10] == 255).all()
    assert np.abs(pixels[10:].astype(int) - _stretched(photo)[10:]).max() <= 1
    # the size is read from the tags and checked before decoding
    with pytest.raises(ImageError, match=r"rotated.tif.*227x201 = 45627 pixels is over the limit of 1000"):
        load_image(tmp_path / "rotated.tif", max_pixels=1000)
    data = _tiff(unit)
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.tif: a TIFF that neither Pillow nor OpenCV can decode"):
        load_image(tmp_path / "cut.tif")
    for name, samples in (("half.tif", unit.astype(np.float16)), ("gray_alpha.tif", unit[..., :2])):
        (tmp_path / name).write_bytes(_tiff(samples))  # half floats, and float gray with alpha: OpenCV cannot either
        with pytest.raises(ImageError, match=f"{name}: a TIFF that neither Pillow nor OpenCV can decode"):
            load_image(tmp_path / name)
    (tmp_path / "lost.tif").write_bytes(data[:4] + struct.pack("<I", len(data) + 100) + data[8:])
    with pytest.raises(ImageError, match="lost.tif: corrupt TIFF header"):
        load_image(tmp_path / "lost.tif")


@pytest.mark.parametrize("orientation", [3, 6])
def test_16_bit_colour_tiff_is_turned_once(tmp_path, photo, orientation):
    """OpenCV turns a TIFF by its orientation tag, and Pillow drops the tag once it has turned its own copy:
    the 16-bit colour decoded again by OpenCV must not be turned a second time."""
    stored = (photo.astype(np.int64) * 4095 // 255).astype(np.uint16)  # 12-bit data: Pillow's 8 bits are dark
    (tmp_path / "c.tif").write_bytes(_tiff(stored, orientation=orientation))
    turned = np.rot90(photo, k=2) if orientation == 3 else np.rot90(photo, k=-1)
    assert np.abs(load_image(tmp_path / "c.tif").pixels.astype(int) - turned).max() <= 1


def test_uint16_and_float_arrays():
    np.testing.assert_array_equal(load_image(np.full((3, 4), 65535, np.uint16)).pixels, 255)
    np.testing.assert_array_equal(load_image(np.full((3, 4, 3), 0.5, np.float32)).pixels, 128)


def test_float_array_outside_unit_range_is_stretched_not_clipped_white():
    # photo.astype(np.float32) keeps 0-255 values; clipping to [0, 1] would give a white image
    photo = np.zeros((6, 5, 3), np.uint8)
    photo[1:4, 2:] = (255, 128, 0)
    np.testing.assert_array_equal(load_image(photo.astype(np.float32)).pixels, photo)
    np.testing.assert_array_equal(load_image(photo.astype(np.float64) / 255.0).pixels, photo)
    # float64 beyond float32's range is stretched in float64, not cast to infinity first
    np.testing.assert_array_equal(load_image(np.array([[-1e300, 0.0, 1e300]])).pixels[..., 0], [[0, 128, 255]])


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255  # left half opaque red-ish, right half fully transparent
    img = load_image(_save(tmp_path, rgba, "a.png"))
    np.testing.assert_array_equal(img.pixels[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(img.pixels[0, 5], [255, 255, 255])


def test_palette_and_cmyk_and_grayscale(tmp_path, photo):
    pal = PIL.Image.fromarray(photo).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=64)
    loaded = load_image(_save(tmp_path, pal, "p.png"))
    np.testing.assert_array_equal(loaded.pixels, np.asarray(pal.convert("RGB")))

    cmyk = PIL.Image.fromarray(photo).convert("CMYK")
    loaded = load_image(_save(tmp_path, cmyk, "c.jpg", quality=95))
    assert loaded.pixels.shape == photo.shape
    assert np.abs(loaded.pixels.astype(int) - photo).mean() < 6

    gray = load_image(_save(tmp_path, photo[..., 1], "g.png"))
    assert (gray.pixels[..., 0] == gray.pixels[..., 2]).all()


HEIC = Path(__file__).with_name("data") / "astronaut_rotated.heic"  # made by tests/data/make_heic.py
needs_heif_plugin = pytest.mark.skipif(
    importlib.util.find_spec("pi_heif") is None and importlib.util.find_spec("pillow_heif") is None,
    reason="no HEIF plugin installed (pip install pi-heif: localmatch's heif extra, also in its test extra)")


@needs_heif_plugin
def test_heic_decodes_with_its_rotation():
    """What phones save: a 256 x 200 crop of the astronaut, stored rotated 90 degrees clockwise."""
    image = load_image(HEIC)
    crop = skimage.data.astronaut()[0:256, 100:300]
    assert image.size == (256, 200)
    assert np.abs(image.pixels.astype(float) - np.rot90(crop, -1)).mean() < 4  # lossy, upright
    data = HEIC.read_bytes()
    for name, broken in (("cut.heic", data[: len(data) // 2]), ("header.heic", data[:40])):
        with pytest.raises(ImageError, match=f"{name}: a corrupt HEIF"):  # the child's reason, as it gave it
            decode_bytes(broken, name)
    with pytest.raises(ImageError, match=r"big\.heic: 256x200 = 51200 pixels is over the limit of 1000"):
        decode_bytes(data, "big.heic", max_pixels=1000)  # the limit reaches the child


@needs_heif_plugin
def test_a_heic_file_that_crashes_libheif_is_an_image_error_and_the_next_one_decodes():
    """pi-heif 1.4.0 (libheif 1.23.0) dies of a segmentation fault on this byte of the ``iinf`` box; HEIF is
    decoded in a child process (localmatch.heif), so this process lives on and names the file."""
    corrupt = bytearray(HEIC.read_bytes())
    corrupt[176] ^= 0xFF
    with pytest.raises(ImageError, match="flipped.heic: "):  # "...crashed on it (SIGSEGV)" where libheif crashes
        decode_bytes(bytes(corrupt), "flipped.heic")
    assert load_image(HEIC).size == (256, 200)


@needs_heif_plugin
def test_a_heif_child_that_dies_mid_request_is_reported_and_replaced(monkeypatch):
    from localmatch import heif

    heif._child.stop()
    dying = [sys.executable, "-c", "import os, sys; sys.stdin.buffer.read(24); os.abort()"]
    monkeypatch.setattr(heif, "child_command", lambda *args: dying)
    with pytest.raises(ImageError, match=r"x\.heic: the HEIF decoder \(libheif\) crashed on it \((SIGABRT|exit status)"):
        heif.decode_in_child(b"\0" * 64, "x.heic", 1000)
    assert heif._child.process is None  # the next file starts a new child
    monkeypatch.undo()
    assert heif.decode_in_child(HEIC.read_bytes(), "ok.heic", 1000 * 1000).shape == (200, 256, 3)  # (H, W, 3)


@needs_heif_plugin
def test_heif_is_decoded_here_when_no_child_can_start(monkeypatch, caplog):
    from localmatch import heif

    heif._child.stop()
    monkeypatch.setattr(heif, "child_command", lambda *args: [str(Path("/nonexistent") / "python")])
    with caplog.at_level("WARNING", logger="localmatch.heif"):
        assert load_image(HEIC).size == (256, 200)
    assert "cannot start" in caplog.text and str(HEIC) in caplog.text


@needs_heif_plugin
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_process_decodes_heif_through_a_child_of_its_own():
    from localmatch import heif

    assert load_image(HEIC).size == (256, 200)  # the parent's child is running
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the forked process reports through its exit status)
        try:
            forgot = heif._child.process is None and not heif._child.lock.locked()
            os._exit(0 if forgot and load_image(HEIC).size == (256, 200) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert load_image(HEIC).size == (256, 200)  # and the parent's still answers the parent


def test_heic_without_a_plugin_says_which_to_install():
    code = ("import sys; sys.modules['pi_heif'] = sys.modules['pillow_heif'] = None\n"
            "import localmatch\n"
            "try:\n    localmatch.load_image(sys.argv[1])\n"
            "except localmatch.ImageError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(HEIC)], capture_output=True, text=True, check=True).stdout
    assert str(HEIC) in out and "HEIF (HEIC) image" in out and "pip install pi-heif" in out


# ---- bad input: one error type, naming the file and the reason ----

def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header says it is ``width x height``."""
    buf = io.BytesIO()
    PIL.Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_bad_input_raises_image_error_naming_the_file(tmp_path, photo):
    good = _save(tmp_path, photo, "good.jpg", quality=90).read_bytes()
    cases = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 2],
        "corrupt.jpg": good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
        "text.jpg": b"this is not an image at all\n" * 10,
        "bomb.png": _png_claiming_size(100_000, 100_000),
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert str(path) in str(info.value) and info.value.reason, name
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "TIFF", "WEBP", "AVIF", "JPEG2000", "GIF", "BMP"])
def test_every_one_byte_corruption_of_the_header_decodes_or_names_the_file(photo, kind):
    """Flipping any one of the first 256 bytes gives pixels or an ImageError, never another exception
    (Pillow's AVIF plugin raised RuntimeError from a corrupt header)."""
    encoded = io.BytesIO()
    try:
        PIL.Image.fromarray(photo).save(encoded, kind)
    except (KeyError, OSError) as e:
        pytest.skip(f"this Pillow cannot write {kind}: {e}")
    good = encoded.getvalue()
    for i in range(min(256, len(good))):
        corrupt = bytearray(good)
        corrupt[i] ^= 0xFF
        try:
            decode_bytes(bytes(corrupt), f"flipped-{i}.{kind.lower()}")
        except ImageError as e:
            assert f"flipped-{i}." in str(e) and e.reason


def _with_truncated_exif(tmp_path, photo) -> Path:
    exif = PIL.Image.Exif()
    exif[271] = "A" * 40  # the camera's make, cut short below
    path = tmp_path / "truncated_exif.jpg"
    PIL.Image.fromarray(photo).save(path, "JPEG", exif=exif.tobytes()[:-20])
    return path


def test_pillows_warnings_are_logged_with_the_file_name(tmp_path, photo, caplog):
    """Pillow warns "Truncated File Read" about a cut EXIF block without naming the file: it is logged with
    the path instead, the pixels still come, and no warning escapes to the caller."""
    path = _with_truncated_exif(tmp_path, photo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped would raise here
        with caplog.at_level("WARNING", logger="localmatch.io"):
            image = load_image(path)
    assert image.size == (227, 201)
    assert f"{path}: Truncated File Read" in caplog.text


def test_decoding_in_threads_leaves_the_warning_filters_as_they_were(tmp_path, photo):
    """``warnings.catch_warnings`` is process-wide state: decoding from several threads at once (as pairs are
    decoded side by side) must not leave one decoder's filters installed after all have returned."""
    paths = [_with_truncated_exif(tmp_path, photo), _save(tmp_path, photo, "plain.png")]
    before = list(warnings.filters)
    with ThreadPoolExecutor(4) as pool:
        sizes = set(pool.map(lambda i: load_image(paths[i % 2]).size, range(200)))
    assert sizes == {(227, 201)}
    assert warnings.filters == before


def test_pixel_limit_is_configurable(tmp_path, photo):
    path = _save(tmp_path, photo, "x.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(photo, max_pixels=1000)
    assert load_image(path, max_pixels=photo.shape[0] * photo.shape[1]).size == (227, 201)


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)
    with pytest.raises(ValueError):
        load_image(b"")


@pytest.mark.parametrize("array", [np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                   np.zeros((4, 4), np.int64), np.full((4, 4), np.nan, np.float32)])
def test_bad_arrays(array):
    with pytest.raises(ImageError, match="<array>"):
        load_image(array)


# ---- working size and the way back ----

def test_resize_keeps_small_images_and_shrinks_large_ones():
    small = np.zeros((300, 200), np.uint8)
    assert resize_to_working(small, 1024).pixels is small
    big = np.zeros((777, 1001), np.uint8)
    r = resize_to_working(big, 500)
    assert r.pixels.shape == (388, 500)
    assert r.scale == (500 / 1001, 388 / 777)
    assert resize_to_working(big, None).pixels is big


def test_to_original_uses_pixel_centres():
    r = resize_to_working(np.zeros((10, 30), np.uint8), 15)  # exactly half size
    # Working pixel 0 covers original pixels 0 and 1: its centre is at 0.5 in original pixels.
    np.testing.assert_allclose(r.to_original(np.array([[0.0, 0.0], [14.0, 4.0]])), [[0.5, 0.5], [28.5, 8.5]])


@pytest.mark.parametrize("multiple", [1, 8, 16, 32])
def test_working_sizes_stay_within_max_side_and_map_back_corner_to_corner(multiple):
    """Rounding to a network's stride takes a side at most half a stride over ``max_side`` (or its own
    length), and each axis maps back with its own scale: the working image's outer corners land on the
    original's (the scales differ along x and y once both sides are rounded)."""
    for width, height in [(2000, 1000), (1000, 300), (777, 1001), (1920, 1080), (641, 479), (33, 2000)]:
        for max_side in (1016, 512, 100):
            r = resize_to_working(np.zeros((height, width), np.uint8), max_side, multiple=multiple)
            h, w = r.pixels.shape
            assert max(w, h) <= max(min(max_side, max(width, height)) + multiple // 2, multiple), \
                (width, height, max_side)
            assert w % multiple == 0 and h % multiple == 0
            corners = r.to_original(np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]]))
            np.testing.assert_allclose(corners, [[-0.5, -0.5], [width - 0.5, height - 0.5]], atol=1e-3)


def test_shrinking_averages_every_pixel_it_replaces():
    """Shrunk 4 times, each working pixel is the mean of 16 pixels (area interpolation): the spread of
    random noise falls to a quarter, where bilinear sampling (2 x 2 pixels) would halve it, aliasing the rest."""
    noise = np.random.default_rng(0).normal(128, 40, size=(400, 400)).clip(0, 255).astype(np.float32)
    small = resize_to_working(noise, 100).pixels
    assert small.shape == (100, 100) and small.std() < 0.3 * noise.std()


def test_image_gray_and_size(photo):
    img = Image(photo, "x")
    assert img.size == (227, 201) and img.gray().shape == (201, 227)


def test_crop_keeps_the_box_pixels_and_gives_their_offset(photo):
    image = Image(photo, "photo.png")  # 227 x 201
    part, offset = crop(image, (10.4, 20.6, 30, 50))
    assert offset == (10, 21) and part.size == (20, 29) and part.source == "photo.png"
    np.testing.assert_array_equal(part.pixels, photo[21:50, 10:30])
    part, offset = crop(image, np.array([-5, 190, 400, 300]))  # cut to the image
    assert offset == (0, 190) and part.size == (227, 11)
    for box, words in [((300, 0, 400, 10), "photo.png: the box [300, 0, 400, 10] holds no pixel of the 227x201 image"),
                       ((5, 5, 5, 9), "holds no pixel"), ((0, 0, 1), "a box is four finite numbers"),
                       ("abcd", "a box is four finite numbers")]:
        with pytest.raises(ImageError, match=re.escape(words)):
            crop(image, box)

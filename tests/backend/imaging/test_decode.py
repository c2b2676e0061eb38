"""Tests for backend.imaging.decode: real files written by Pillow in every supported format and mode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.imaging import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MaskError,
    UnsupportedImageError,
    load_image,
    load_mask,
)

RED = (200, 40, 30)
BLUE = (20, 60, 220)


def two_colour_image(mode: str = "RGB", size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half RED, right half BLUE, (W, H) = size."""
    width, height = size
    array = np.empty((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return Image.fromarray(array, "RGB").convert(mode)


def save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


@pytest.mark.parametrize(
    ("suffix", "params", "tolerance"),
    [
        (".png", {}, 0.0),
        (".jpg", {"quality": 95}, 6 / 255),
        (".tif", {}, 0.0),
        (".bmp", {}, 0.0),
        (".webp", {"lossless": True}, 0.0),
    ],
)
def test_rgb_formats_keep_colours(tmp_path: Path, suffix: str, params: dict, tolerance: float) -> None:
    path = save(two_colour_image(), tmp_path / f"image{suffix}", **params)
    decoded = load_image(path)
    assert decoded.size == (40, 20)
    assert decoded.rgb.shape == (20, 40, 3) and decoded.rgb.dtype == np.float32
    assert decoded.alpha is None
    np.testing.assert_allclose(decoded.rgb[10, 5], np.array(RED) / 255, atol=tolerance + 1e-6)
    np.testing.assert_allclose(decoded.rgb[10, 35], np.array(BLUE) / 255, atol=tolerance + 1e-6)
    assert decoded.format == {".jpg": "JPEG", ".tif": "TIFF", ".webp": "WEBP"}.get(suffix, suffix[1:].upper())


def test_rgba_png_keeps_a_real_alpha_and_drops_an_opaque_one(tmp_path: Path) -> None:
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., :3] = RED
    rgba[..., 3] = 255
    opaque = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "opaque.png"))
    assert opaque.alpha is None
    rgba[2:5, 3:9, 3] = 0
    rgba[0, 0, 3] = 128
    decoded = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "cutout.png"))
    assert decoded.alpha is not None and decoded.alpha.shape == (10, 12)
    assert decoded.alpha.dtype == np.float32
    assert decoded.alpha[3, 4] == 0.0 and decoded.alpha[8, 8] == 1.0
    assert decoded.alpha[0, 0] == pytest.approx(128 / 255)
    np.testing.assert_allclose(decoded.rgb[8, 8], np.array(RED) / 255, atol=1e-6)


def test_16_bit_greyscale_png_maps_to_unit_range(tmp_path: Path) -> None:
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    decoded = load_image(save(image, tmp_path / "deep.png"))
    np.testing.assert_allclose(decoded.rgb[0, :, 0], [0.0, 32768 / 65535, 1.0], atol=1e-6)
    np.testing.assert_array_equal(decoded.rgb[..., 0], decoded.rgb[..., 2])
    assert decoded.alpha is None


def test_palette_png_with_transparent_index_gets_alpha(tmp_path: Path) -> None:
    image = Image.new("P", (6, 4), 1)
    image.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (256 - 3) * 3)
    image.paste(0, (0, 0, 2, 4))  # the left two columns use the transparent index 0
    image.paste(2, (4, 0, 6, 4))
    decoded = load_image(save(image, tmp_path / "palette.png", transparency=0))
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha[0], [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(decoded.rgb[1, 2], np.array(RED) / 255, atol=1e-6)
    np.testing.assert_allclose(decoded.rgb[1, 5], np.array(BLUE) / 255, atol=1e-6)


def test_palette_png_without_transparency_has_no_alpha(tmp_path: Path) -> None:
    image = two_colour_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    decoded = load_image(save(image, tmp_path / "palette.png"))
    assert decoded.alpha is None
    np.testing.assert_allclose(decoded.rgb[10, 5], np.array(RED) / 255, atol=2 / 255)


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    path = save(two_colour_image("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    decoded = load_image(path)
    np.testing.assert_allclose(decoded.rgb[10, 5], np.array(RED) / 255, atol=8 / 255)
    np.testing.assert_allclose(decoded.rgb[10, 35], np.array(BLUE) / 255, atol=8 / 255)


def test_greyscale_and_la(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8), "L")
    decoded = load_image(save(grey, tmp_path / "grey.png"))
    np.testing.assert_allclose(decoded.rgb[0], [[0, 0, 0], [0.2, 0.2, 0.2], [1, 1, 1]], atol=1e-6)
    assert decoded.alpha is None
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], dtype=np.uint8), "LA")
    decoded = load_image(save(la, tmp_path / "la.png"))
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, [[1.0, 0.0]])
    np.testing.assert_allclose(decoded.rgb[0, 0], [100 / 255] * 3, atol=1e-6)


def test_one_bit_bmp(tmp_path: Path) -> None:
    image = Image.new("1", (8, 3), 0)
    image.paste(1, (4, 0, 8, 3))
    decoded = load_image(save(image, tmp_path / "bits.bmp"))
    assert decoded.format == "BMP"
    np.testing.assert_array_equal(decoded.rgb[1, :, 1], [0, 0, 0, 0, 1, 1, 1, 1])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored image must be rotated 90 degrees clockwise to view
    path = save(two_colour_image(), tmp_path / "rotated.jpg", exif=exif, quality=95)
    decoded = load_image(path)
    assert decoded.size == (20, 40)
    assert decoded.rgb.shape == (40, 20, 3)
    # Turning clockwise brings the left (red) half to the top.
    np.testing.assert_allclose(decoded.rgb[5, 10], np.array(RED) / 255, atol=6 / 255)
    np.testing.assert_allclose(decoded.rgb[35, 10], np.array(BLUE) / 255, atol=6 / 255)


def test_bytes_input(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    two_colour_image().save(buffer, "PNG")
    decoded = load_image(buffer.getvalue())
    assert decoded.format == "PNG" and decoded.size == (40, 20)


def test_file_over_byte_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("not an image at all " * 100)  # 2,000 bytes of text: decoding would say unsupported
    with pytest.raises(ImageTooLargeError, match="limit is 1,000 bytes"):
        load_image(path, max_bytes=1000)
    with pytest.raises(ImageTooLargeError):
        load_image(path.read_bytes(), max_bytes=1000)


def png_with_header_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is patched to claim (width, height), with a correct CRC."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("size", [(50_000, 1_000), (100_000, 100_000)])
def test_header_claiming_too_many_pixels_is_refused(size: tuple[int, int]) -> None:
    # 50 M pixels is over our 40 M limit but under Pillow's; 10 G pixels trips Pillow's bomb check too.
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(png_with_header_size(*size))


def test_pixel_limit_is_configurable() -> None:
    data = png_with_header_size(4, 4)
    with pytest.raises(ImageTooLargeError, match="limit is 10 pixels"):
        load_image(data, max_pixels=10)


def test_zero_size_png_is_corrupt() -> None:
    with pytest.raises(CorruptImageError, match="starts like a PNG file"):
        load_image(png_with_header_size(0, 4))


def test_text_file_is_unsupported_and_names_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, this is text")
    with pytest.raises(UnsupportedImageError, match="PNG, JPEG, WEBP, TIFF, BMP"):
        load_image(path)


def test_gif_is_unsupported_and_named(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError, match="GIF images are not supported"):
        load_image(path)


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    with pytest.raises(CorruptImageError, match="truncated or damaged"):
        load_image(data[: len(data) // 2])


def test_missing_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "missing.png")


def test_errors_are_value_errors() -> None:
    for error in (UnsupportedImageError, ImageTooLargeError, CorruptImageError, MaskError):
        assert issubclass(error, ImageError) and issubclass(error, ValueError)


def test_load_mask_uses_luminance_and_resizes(tmp_path: Path) -> None:
    array = np.zeros((20, 30), dtype=np.uint8)
    array[5:15, 10:20] = 255
    path = save(Image.fromarray(array, "L"), tmp_path / "mask.png")
    mask = load_mask(path, (60, 40))
    assert mask.shape == (40, 60) and mask.dtype == np.bool_
    expected = np.zeros((40, 60), dtype=bool)
    expected[10:30, 20:40] = True
    np.testing.assert_array_equal(mask, expected)


def test_load_mask_prefers_a_real_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)  # black everywhere: luminance would give an empty mask
    rgba[2:6, 2:6, 3] = 255
    mask = load_mask(save(Image.fromarray(rgba, "RGBA"), tmp_path / "cutout.png"), (10, 10))
    assert mask.sum() == 16 and mask[3, 3]


def test_load_mask_refuses_empty_full_and_misshapen_masks(tmp_path: Path) -> None:
    empty = save(Image.new("L", (10, 10), 0), tmp_path / "empty.png")
    full = save(Image.new("L", (10, 10), 255), tmp_path / "full.png")
    with pytest.raises(MaskError, match="empty"):
        load_mask(empty, (10, 10))
    with pytest.raises(MaskError, match=r"covers 100\.0%"):
        load_mask(full, (10, 10))
    with pytest.raises(MaskError, match="aspect ratios differ"):
        load_mask(empty, (20, 10))


def test_mpo_jpeg_from_a_camera_reads_as_jpeg() -> None:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    decoded = load_image(buffer.getvalue())
    assert decoded.format == "JPEG"
    np.testing.assert_allclose(decoded.rgb[4, 4], np.array(RED) / 255, atol=6 / 255)

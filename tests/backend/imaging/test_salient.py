"""Tests for backend.imaging.salient and the salient branch of compute_mask / reconstruct_photo.

The models are tiny ONNX graphs built here (``tiny_onnx``): a 1x1 convolution whose output is the
normalised red minus the normalised green channel, so every expectation is computed by hand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from backend.imaging import compute_mask
from backend.imaging.salient import (
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KNOWN_MODELS,
    MODEL_ENV,
    MaskModelDownloadError,
    MaskModelError,
    SalientModel,
    download_model,
    download_url,
    find_mask_model,
    load_cached,
    mask_model_status,
    spec_for,
)
from backend.methods.pipeline import export, reconstruct_photo
from backend.paths import mask_model_dir
from tests.backend.imaging.tiny_onnx import REDDISH, channel_model, flat_model, write
from tests.backend.server.fakes import FakeMethod, FakeOptions

GREEN = (0.1, 0.8, 0.1)
RED = (0.9, 0.1, 0.1)


pytestmark = pytest.mark.usefixtures("isolated_home")  # tests/conftest.py


@pytest.fixture
def reddish(tmp_path: Path) -> Path:
    return write(tmp_path / "models" / "reddish.onnx", channel_model(REDDISH, 64))


def scene(size: tuple[int, int] = (64, 64)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Green photo, a red square with a green hole, a small red blob; (rgb, square filled, blob)."""
    height, width = size
    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[...] = GREEN
    square = np.zeros((height, width), dtype=bool)
    square[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    rgb[square] = RED
    hole = np.zeros_like(square)
    hole[height // 2 - 2 : height // 2 + 2, width // 2 - 2 : width // 2 + 2] = True
    rgb[hole] = GREEN
    blob = np.zeros_like(square)
    blob[2:6, 2:6] = True
    rgb[blob] = RED
    return rgb, square, blob


def reddish_oracle(rgb: np.ndarray) -> np.ndarray:
    """The hand-computed probability of the reddish model on an image of its own size: (H, W)."""
    x = rgb.astype(np.float64) / rgb.max()
    normalised = (x - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    raw = normalised[..., 0] - normalised[..., 1]
    return (raw - raw.min()) / (raw.max() - raw.min())


# -- loading --------------------------------------------------------------------------------------


def test_load_reads_the_input_name_and_size_from_the_graph(reddish: Path, tmp_path: Path) -> None:
    model = SalientModel.load(reddish)
    assert model.input_name == "image" and model.input_size == (64, 64)
    assert model.name == "reddish" and model.spec.output == "minmax"  # unknown name: U^2-Net's processing
    # A dynamic size falls back to the known model's size, chosen by the file's name.
    u2netp = SalientModel.load(write(tmp_path / "u2netp.onnx", channel_model(REDDISH, None)))
    assert u2netp.input_size == (320, 320) and u2netp.spec == KNOWN_MODELS["u2netp"]
    isnet = SalientModel.load(write(tmp_path / "isnet-general-use.onnx", channel_model(REDDISH, None)))
    assert isnet.input_size == (1024, 1024) and isnet.spec.std == (1.0, 1.0, 1.0)
    assert spec_for("birefnet-general-lite").output == "sigmoid"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "is empty"),
        (b"this is not a protobuf at all", "not a usable ONNX model"),
        (flat_model(), "rank 4"),
    ],
)
def test_load_refuses_unusable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MaskModelError, match=message):
        SalientModel.load(path)
    with pytest.raises(MaskModelError, match="not found"):
        SalientModel.load(tmp_path)  # a folder


def test_a_two_channel_input_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "g", [image], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(MaskModelError, match="3 channels"):
        SalientModel.load(write(tmp_path / "two.onnx", model.SerializeToString()))


# -- processing -----------------------------------------------------------------------------------


def test_preprocess_divides_by_the_maximum_and_normalises(reddish: Path) -> None:
    model = SalientModel.load(reddish)
    rng = np.random.default_rng(0)
    same_size = rng.uniform(0.0, 0.8, (64, 64, 3)).astype(np.float32)
    expected = (same_size / same_size.max() - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    network_input = model.preprocess(same_size)
    assert network_input.shape == (1, 3, 64, 64) and network_input.dtype == np.float32
    np.testing.assert_allclose(network_input[0], expected.transpose(2, 0, 1), atol=1e-5)
    # A photo twice as large in 2 x 2 blocks is shrunk by averaging each block (area resampling).
    blocks = rng.uniform(0.0, 0.8, (64, 64, 3)).astype(np.float32)
    large = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    large[0::2, 0::2] += 0.1  # the block means are blocks + 0.025
    large[1::2, 1::2] -= 0.1
    large[0::2, 1::2] += 0.05
    large[1::2, 0::2] += 0.05
    means = blocks + 0.025
    expected = (means / means.max() - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(model.preprocess(large)[0], expected.transpose(2, 0, 1), atol=1e-5)
    # A constant colour stays constant whatever the size.
    small = np.full((20, 30, 3), 0.5, dtype=np.float32)
    expected_value = (1.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(model.preprocess(small)[0, :, 7, 11], expected_value, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        model.preprocess(small[..., 0])


def test_postprocess_minmax_sigmoid_and_resize(reddish: Path, tmp_path: Path) -> None:
    model = SalientModel.load(reddish)
    raw = np.asarray([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32)[None, None]  # (1, 1, 2, 2)
    np.testing.assert_allclose(model.postprocess(raw, (2, 2)), [[0.0, 0.25], [0.5, 1.0]], atol=1e-6)
    assert model.postprocess(np.full((1, 1, 4, 4), 3.0), (8, 6)).shape == (8, 6)
    assert not model.postprocess(np.full((1, 1, 4, 4), 3.0), (8, 6)).any()  # constant: no object
    upsampled = model.postprocess(np.kron(raw[0, 0], np.ones((4, 4))), (16, 16))
    np.testing.assert_allclose(upsampled[[0, 0, 15, 15], [0, 15, 0, 15]], [0.0, 0.25, 0.5, 1.0], atol=1e-6)
    logits = SalientModel.load(reddish, spec=replace(spec_for("reddish"), output="sigmoid"))
    values = np.asarray([[-2.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(logits.postprocess(values, (2, 2)), 1 / (1 + np.exp(-values)), atol=1e-6)
    with pytest.raises(MaskModelError, match="shape"):
        model.postprocess(np.zeros((1, 2, 4, 4)), (4, 4))
    with pytest.raises(MaskModelError, match="non-finite"):
        model.postprocess(np.full((1, 1, 4, 4), np.nan), (4, 4))


def test_probability_is_the_hand_computed_map(reddish: Path) -> None:
    rgb, _, _ = scene()
    model = SalientModel.load(reddish)
    np.testing.assert_allclose(model.probability(rgb), reddish_oracle(rgb), atol=1e-5)


def test_segment_thresholds_keeps_the_largest_component_and_fills_holes(reddish: Path) -> None:
    model = SalientModel.load(reddish)
    for size in [(64, 64), (150, 200)]:  # the model's own size, and resized both ways
        rgb, square, blob = scene(size)
        mask = model.segment(rgb)
        assert mask.shape == size and mask.dtype == np.bool_
        assert not (mask & blob).any()  # the small blob is not the largest component
        assert mask[size[0] // 2, size[1] // 2]  # the hole is filled
        # Only the square's outline may differ (resampling, the open/close rounding its corners).
        outline = cv2.dilate(square.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        outline &= ~(cv2.erode(square.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        assert not ((mask ^ square) & ~outline).any()
        assert (mask ^ square).sum() <= 0.03 * square.sum()


# -- compute_mask ---------------------------------------------------------------------------------


def test_compute_mask_order_given_alpha_salient_grabcut(reddish: Path) -> None:
    rgb, _, _ = scene((120, 120))
    model = SalientModel.load(reddish)
    salient = compute_mask(rgb, None, None, salient=model)
    assert salient.source == "salient" and salient.note is None
    np.testing.assert_array_equal(salient.mask, model.segment(rgb))
    alpha = np.zeros((120, 120), dtype=np.float32)
    alpha[10:50, 10:50] = 1.0
    with_alpha = compute_mask(rgb, alpha, None, salient=model)
    assert with_alpha.source == "alpha" and with_alpha.mask.sum() == 1600
    given = np.zeros((120, 120), dtype=bool)
    given[70:100, 60:110] = True
    with_given = compute_mask(rgb, alpha, given, salient=model)
    assert with_given.source == "given" and np.array_equal(with_given.mask, given)
    without = compute_mask(rgb, None, None)
    assert without.source == "grabcut" and without.note is None
    assert compute_mask(rgb, np.ones_like(alpha), None, salient=model).source == "salient"


def test_compute_mask_falls_back_to_grabcut_with_a_note(tmp_path: Path, reddish: Path) -> None:
    rgb, _, _ = scene((120, 120))
    blind = SalientModel.load(write(tmp_path / "blind.onnx", channel_model((0.0, 0.0, 0.0), 64)))
    result = compute_mask(rgb, None, None, salient=blind)
    assert result.source == "grabcut" and result.note is not None
    assert "blind" in result.note and "empty" in result.note and "GrabCut was used" in result.note
    np.testing.assert_array_equal(result.mask, compute_mask(rgb, None, None).mask)

    class Failing:
        name = "failing"

        def segment(self, rgb: np.ndarray) -> np.ndarray:
            raise MaskModelError("the mask model x failed: [ONNXRuntimeError] broken")

    failed = compute_mask(rgb, None, None, salient=Failing())  # type: ignore[arg-type]
    assert failed.source == "grabcut" and failed.note is not None and "broken" in failed.note


# -- where the model lives ------------------------------------------------------------------------


def test_find_mask_model_option_then_environment_then_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reddish: Path
) -> None:
    nothing = find_mask_model()
    assert not nothing.available and not nothing.configured and nothing.path is None
    assert nothing.name == DEFAULT_MODEL and "mask-model download" in (nothing.reason or "")
    assert nothing.searched == (str(mask_model_dir() / "*.onnx"),)
    cached_old = write(mask_model_dir() / "u2netp.onnx", channel_model())
    cached_new = write(mask_model_dir() / "other.onnx", channel_model())
    write(mask_model_dir() / ".other.123.part", b"partial")
    import os

    os.utime(cached_old, ns=(1_000_000_000, 1_000_000_000))
    found = find_mask_model()
    assert found.available and found.path == cached_new and found.source == "cache"
    assert found.name == "other"  # the newest file wins
    monkeypatch.setenv(MODEL_ENV, str(reddish))
    from_env = find_mask_model()
    assert from_env.path == reddish and from_env.source == "environment" and from_env.name == "reddish"
    option = find_mask_model(cached_old)
    assert option.path == cached_old and option.source == "option"
    missing = find_mask_model(tmp_path / "gone.onnx")
    assert not missing.available and missing.configured and "gone.onnx is missing" in (missing.reason or "")
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "nope.onnx"))
    assert "$MONO2MESH_MASK_MODEL" in (find_mask_model().reason or "")  # never skipped silently


def test_status_says_why_without_onnxruntime(monkeypatch: pytest.MonkeyPatch, reddish: Path) -> None:
    status = mask_model_status(reddish)
    assert status == {
        "available": True,
        "path": str(reddish),
        "name": "reddish",
        "source": "option",
        "searched": [str(reddish)],
        "reason": None,
        "download_url": "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx",
    }
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # `import onnxruntime` fails
    status = mask_model_status(reddish, base_url="file:///mirror/")
    assert not status["available"] and "onnxruntime" in status["reason"] and status["path"] == str(reddish)
    assert status["download_url"] == "file:///mirror/u2netp.onnx"
    with pytest.raises(MaskModelError, match="onnxruntime"):
        SalientModel.load(reddish)


def test_load_cached_reloads_a_replaced_file(tmp_path: Path) -> None:
    path = write(tmp_path / "m.onnx", channel_model(REDDISH, 64))
    first = load_cached(path)
    assert load_cached(path) is first
    write(path, channel_model(REDDISH, 32))
    import os

    os.utime(path, ns=(5_000_000_000_000, 5_000_000_000_000))
    assert load_cached(path).input_size == (32, 32)


# -- download ---------------------------------------------------------------------------------------


def test_download_from_a_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write(tmp_path / "mirror" / "u2netp.onnx", channel_model())
    # A known name keeps its registry checksum even with another URL: the tiny model is refused.
    with pytest.raises(MaskModelDownloadError, match="checksum mismatch"):
        download_model("u2netp", source.as_uri())
    assert not mask_model_dir().exists() or list(mask_model_dir().iterdir()) == []
    # An unknown name needs a URL and is checked by loading it only.
    target = download_model("tiny", source.as_uri())
    assert target == mask_model_dir() / "tiny.onnx" and target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in mask_model_dir().iterdir()) == ["tiny.onnx"]
    assert find_mask_model().path == target
    # The registry's checksum is what a base URL download checks.
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    monkeypatch.setitem(KNOWN_MODELS, "u2netp", replace(KNOWN_MODELS["u2netp"], checksum=f"md5:{md5}"))
    assert download_url("u2netp", (tmp_path / "mirror").as_uri()) == source.as_uri()
    assert download_model(base_url=(tmp_path / "mirror").as_uri()) == mask_model_dir() / "u2netp.onnx"


def test_download_failures_leave_nothing_behind(tmp_path: Path) -> None:
    junk = write(tmp_path / "junk.onnx", b"not a model")
    with pytest.raises(MaskModelDownloadError, match="not a usable mask model"):
        download_model("junk", junk.as_uri())
    with pytest.raises(MaskModelDownloadError, match="could not download"):
        download_model("gone", (tmp_path / "gone.onnx").as_uri())
    with pytest.raises(MaskModelDownloadError, match="larger than"):
        download_model("big", write(tmp_path / "big.onnx", channel_model()).as_uri(), max_bytes=10)
    with pytest.raises(MaskModelError, match="unknown mask model"):
        download_model("no-such-model")
    with pytest.raises(MaskModelError, match="name"):
        download_model("../escape", junk.as_uri())
    with pytest.raises(MaskModelError, match="http, https or file"):
        download_model("x", "ftp://example.com/x.onnx")
    assert not mask_model_dir().exists() or list(mask_model_dir().iterdir()) == []


def test_nothing_downloads_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reddish: Path
) -> None:
    """Status, lookup and a whole job without any model never open a URL."""
    import urllib.request

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    mask_model_status()
    find_mask_model()
    rgb, _, _ = scene((96, 96))
    photo = tmp_path / "photo.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(photo)
    result = reconstruct_photo(FakeMethod(torch.device("cpu")), photo, options=FakeOptions())
    assert result.mask_source == "grabcut" and not mask_model_dir().exists()


# -- the pipeline -----------------------------------------------------------------------------------


def test_reconstruct_photo_reports_the_mask_model(tmp_path: Path, reddish: Path) -> None:
    rgb, square, _ = scene((96, 96))
    photo = tmp_path / "photo.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(photo)
    method = FakeMethod(torch.device("cpu"))
    plain = reconstruct_photo(method, photo, options=FakeOptions())
    assert plain.report()["photo"] == {"width": 96, "height": 96, "format": "PNG", "mask_source": "grabcut"}

    result = reconstruct_photo(method, photo, options=FakeOptions(), mask_model=reddish)
    photo_report = result.report()["photo"]
    assert photo_report["mask_source"] == "salient" and "mask_note" not in photo_report
    assert photo_report["mask_model"] == {"name": "reddish", "path": str(reddish)}
    assert (result.photo_mask ^ square).sum() <= 0.03 * square.sum()
    paths = export(result, tmp_path / "out", "photo")
    written = np.asarray(Image.open(paths["mask"])) > 127
    np.testing.assert_array_equal(written, result.photo_mask)
    assert json.loads(paths["report"].read_text())["photo"]["mask_source"] == "salient"

    corrupt = write(tmp_path / "corrupt.onnx", channel_model()[:40])
    broken = reconstruct_photo(method, photo, options=FakeOptions(), mask_model=corrupt)
    report = broken.report()["photo"]
    assert report["mask_source"] == "grabcut" and report["mask_model"]["path"] == str(corrupt)
    assert "could not be loaded" in report["mask_note"] and "GrabCut was used" in report["mask_note"]
    np.testing.assert_array_equal(broken.photo_mask, plain.photo_mask)

    missing = reconstruct_photo(method, photo, options=FakeOptions(), mask_model=tmp_path / "no.onnx")
    assert missing.mask_source == "grabcut" and "is missing" in missing.report()["photo"]["mask_note"]

    # A given mask or an alpha channel is used as before: the model is not even looked up.
    rgba = np.dstack([(rgb * 255).astype(np.uint8), np.where(square, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    with_alpha = reconstruct_photo(method, tmp_path / "alpha.png", options=FakeOptions(), mask_model=corrupt)
    assert set(with_alpha.report()["photo"]) == {"width", "height", "format", "mask_source"}
    assert with_alpha.mask_source == "alpha"

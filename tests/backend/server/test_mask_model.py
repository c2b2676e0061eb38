"""The mask model routes of the server (``GET /v1/mask-model``, ``POST /v1/mask-model/download``), jobs
segmented by the model, and ``serve``'s mask model options; over the in-process app and tiny ONNX models.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.imaging.salient import KNOWN_MODELS
from backend.paths import mask_model_dir
from backend.server.command import add_arguments, main
from tests.backend.imaging.tiny_onnx import channel_model, write
from tests.backend.server.support import TEST_PORT, submit, wait_for

PUBLIC = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"


pytestmark = pytest.mark.usefixtures("isolated_home")  # tests/conftest.py


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A folder holding a tiny model under u2netp's file name (it is not the published file)."""
    write(tmp_path / "mirror" / "u2netp.onnx", channel_model())
    return tmp_path / "mirror"


def trust(monkeypatch: pytest.MonkeyPatch, mirror: Path) -> None:
    """Make the registry's u2netp checksum the tiny model's, so the mirror's file is accepted."""
    md5 = hashlib.md5((mirror / "u2netp.onnx").read_bytes()).hexdigest()
    monkeypatch.setitem(KNOWN_MODELS, "u2netp", replace(KNOWN_MODELS["u2netp"], checksum=f"md5:{md5}"))


def test_status_needs_the_token_and_says_where_it_looked(client: TestClient) -> None:
    anonymous = TestClient(client.app, base_url=f"http://127.0.0.1:{TEST_PORT}")
    assert anonymous.get("/v1/mask-model").status_code == 401
    assert anonymous.post("/v1/mask-model/download").status_code == 401
    response = client.get("/v1/mask-model")
    assert response.status_code == 200
    assert response.json() == {
        "available": False,
        "path": None,
        "name": "u2netp",
        "source": None,
        "searched": [str(mask_model_dir() / "*.onnx")],
        "reason": f"no mask model in {mask_model_dir()}; run `mono2mesh mask-model download`",
        "download_url": PUBLIC,
    }


def test_download_checks_the_checksum_then_jobs_use_the_model(
    make_client: Callable[..., TestClient],
    mirror: Path,
    monkeypatch: pytest.MonkeyPatch,
    disc_png: bytes,
) -> None:
    client = make_client(mask_model_url=mirror.as_uri())
    assert client.get("/v1/mask-model").json()["download_url"] == (mirror / "u2netp.onnx").as_uri()
    refused = client.post("/v1/mask-model/download")
    assert refused.status_code == 502 and "checksum mismatch" in refused.json()["detail"]
    assert not mask_model_dir().exists() or list(mask_model_dir().iterdir()) == []
    assert not client.get("/v1/mask-model").json()["available"]

    # Before any model: GrabCut, and the report is as it always was.
    before = wait_for(client, submit(client, disc_png).json()["id"])
    photo = client.get(before["results"]["report"]).json()["photo"]
    assert photo == {"width": 64, "height": 64, "format": "PNG", "mask_source": "grabcut"}

    trust(monkeypatch, mirror)
    answer = client.post("/v1/mask-model/download", json={"name": "u2netp"})
    assert answer.status_code == 200, answer.text
    cached = mask_model_dir() / "u2netp.onnx"
    assert answer.json() == {
        "available": True,
        "path": str(cached),
        "name": "u2netp",
        "source": "cache",
        "searched": [str(mask_model_dir() / "*.onnx")],
        "reason": None,
        "download_url": (mirror / "u2netp.onnx").as_uri(),
    }
    assert cached.read_bytes() == (mirror / "u2netp.onnx").read_bytes()
    assert client.get("/v1/mask-model").json() == answer.json()

    done = wait_for(client, submit(client, disc_png).json()["id"])
    assert done["status"] == "succeeded", done
    photo = client.get(done["results"]["report"]).json()["photo"]
    assert photo["mask_source"] == "salient" and "mask_note" not in photo
    assert photo["mask_model"] == {"name": "u2netp", "path": str(cached)}
    assert client.get(done["results"]["mask"]).status_code == 200


def test_download_errors_are_json_that_name_the_problem(client: TestClient) -> None:
    unknown = client.post("/v1/mask-model/download", json={"name": "no-such-model"})
    assert unknown.status_code == 400 and "unknown mask model 'no-such-model'" in unknown.json()["detail"]
    bad = client.post("/v1/mask-model/download", json={"name": "../../etc"})
    assert bad.status_code == 400 and "name" in bad.json()["detail"]
    wrong_type = client.post("/v1/mask-model/download", json={"name": 5})
    assert wrong_type.status_code == 422 and "name" in wrong_type.json()["detail"]


def test_an_unreachable_mirror_is_a_502(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client(mask_model_url=(tmp_path / "nowhere").as_uri())
    response = client.post("/v1/mask-model/download", json={})
    assert response.status_code == 502 and "could not download" in response.json()["detail"]
    assert client.get("/v1/health").status_code == 200


def test_without_onnxruntime(
    make_client: Callable[..., TestClient], mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(mask_model=mirror / "u2netp.onnx", mask_model_url=mirror.as_uri())
    assert client.get("/v1/mask-model").json()["available"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    status = client.get("/v1/mask-model").json()
    assert not status["available"] and status["source"] == "option" and "onnxruntime" in status["reason"]
    response = client.post("/v1/mask-model/download")
    assert response.status_code == 503 and "onnxruntime" in response.json()["detail"]


def test_a_corrupt_configured_model_falls_back_to_grabcut(
    make_client: Callable[..., TestClient], tmp_path: Path, disc_png: bytes
) -> None:
    corrupt = write(tmp_path / "corrupt.onnx", channel_model()[:50])
    client = make_client(mask_model=corrupt)
    status = client.get("/v1/mask-model").json()
    assert status["available"] and status["path"] == str(corrupt)  # the status does not load the file
    done = wait_for(client, submit(client, disc_png).json()["id"])
    assert done["status"] == "succeeded", done
    photo = client.get(done["results"]["report"]).json()["photo"]
    assert photo["mask_source"] == "grabcut" and photo["mask_model"]["path"] == str(corrupt)
    assert "could not be loaded" in photo["mask_note"]


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_serve_refuses_a_missing_model_or_a_bad_url(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jobs = ["--jobs-dir", str(tmp_path / "jobs"), "--device", "cpu"]
    assert main(serve_args(*jobs, "--mask-model", str(tmp_path / "gone.onnx"))) == 2
    assert "gone.onnx does not exist" in capsys.readouterr().err
    assert main(serve_args(*jobs, "--mask-model-url", "ftp://example.com/")) == 2
    assert "--mask-model-url" in capsys.readouterr().err
    args = serve_args("--mask-model", "m.onnx", "--mask-model-url", "file:///models/")
    assert (args.mask_model, args.mask_model_url) == (Path("m.onnx"), "file:///models/")

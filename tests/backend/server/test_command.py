"""``mono2mesh serve`` without a running server: options, state file, Host rules."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import pytest

from backend.server.command import _locked, add_arguments, main, write_state_file
from backend.server.config import ServerConfig, is_loopback


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.device, args.max_upload_mb, args.max_pixels) == (
        None,
        0,
        "auto",
        32.0,
        40e6,
    )
    assert parse("--max-pixels", "1e6").max_pixels == 1e6


def test_state_file_is_created_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "server.json"
    path.parent.mkdir()
    path.write_text("old")
    os.chmod(path, 0o644)
    state = {"url": "http://127.0.0.1:1", "token": "t", "pid": 1, "version": "0", "jobs_dir": "/j"}
    write_state_file(path, state)
    assert json.loads(path.read_text()) == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["server.json"]


def test_a_remote_host_needs_allow_remote(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(parse("--host", "0.0.0.0", "--jobs-dir", str(tmp_path / "jobs")))
    assert status == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert not (tmp_path / "jobs").exists()


def test_a_busy_jobs_folder_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    with _locked(jobs / ".lock"):
        status = main(
            parse("--jobs-dir", str(jobs), "--state-file", str(tmp_path / "s.json"), "--device", "cpu")
        )
    assert status == 2
    assert "another backend server" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_an_unusable_device_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(parse("--device", "tpu", "--jobs-dir", str(tmp_path / "jobs"))) == 2
    assert "device" in capsys.readouterr().err


def test_allowed_hosts() -> None:
    loopback = ServerConfig(jobs_dir=Path("."), token="t", host="127.0.0.1", port=8000)
    assert loopback.allowed_hosts() == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert loopback.url == "http://127.0.0.1:8000"
    named = ServerConfig(jobs_dir=Path("."), token="t", host="192.168.1.5", port=9)
    assert named.allowed_hosts() == {"192.168.1.5:9"}
    ipv6 = ServerConfig(jobs_dir=Path("."), token="t", host="::1", port=9)
    assert "[::1]:9" in (ipv6.allowed_hosts() or set()) and ipv6.url == "http://[::1]:9"
    wildcard = ServerConfig(jobs_dir=Path("."), token="t", host="0.0.0.0", port=9)
    assert wildcard.allowed_hosts() is None and wildcard.url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="token"):
        ServerConfig(jobs_dir=Path("."), token="")


def test_loopback_names() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.1", "example.com"))

"""The second hostile catalogue (issue 31): what a report path points at is never destroyed, labels
as ids, a stale or busy cache, tiny evaluation splits, orphan workers, exceptions from user code,
and odd images read as the user's loader reads them. Each test plants the case and asserts the
outcome a user needs."""

from __future__ import annotations

import json
import os
import socket
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from dnncheck.cli import app

runner = CliRunner()
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root (CI runs as root)")


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3)
    return path


def _audit(data, *args):
    return runner.invoke(app, ["audit", str(data), "--select", "split-leakage", "--model", "mlp", "--quiet", *args])


# -- 1. report paths ---------------------------------------------------------------------------------
@ROOT_ONLY
def test_json_to_a_character_device_writes_through_and_keeps_the_device(tiny_npz, tmp_path):
    """`--json /dev/null` as root replaced /dev/null with a regular file (the rename of an atomic
    write); here on device nodes the test makes: null (1,3) and full (1,7)."""
    null, full = tmp_path / "null", tmp_path / "full"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    out = _audit(tiny_npz, "--json", str(null), "--html", str(null))
    assert out.exit_code in (0, 1), out.output
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    out = _audit(tiny_npz, "--junit", str(full))
    assert out.exit_code == 2 and "No space left on device" in out.stderr and "Traceback" not in out.output
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "full", "null"]  # no temp file left


def test_a_fifo_is_written_through_and_one_without_reader_is_refused(tiny_npz, tmp_path):
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = _audit(tiny_npz, "--json", str(fifo))
    assert out.exit_code == 2 and "no process is reading" in out.stderr  # not a hang
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    try:
        out = _audit(tiny_npz, "--json", str(fifo))
    finally:
        if reader.is_alive():  # unblock the reader whatever happened
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert out.exit_code in (0, 1), out.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and json.loads(got[0])["schema_version"] == 1


def test_a_symlink_is_written_through_and_stays_a_symlink(tiny_npz, tmp_path):
    target = tmp_path / "reports" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    assert _audit(tiny_npz, "--json", str(link)).exit_code in (0, 1)
    assert link.is_symlink() and json.loads(target.read_text())["schema_version"] == 1


def test_a_symlink_to_a_descriptor_is_written_through(tiny_npz, tmp_path):
    """A link to /proc/self/fd/N (as /dev/stdout is) goes to that descriptor, never replaced."""
    log = tmp_path / "log.txt"
    link = tmp_path / "out.json"
    with open(log, "w") as handle:
        link.symlink_to(f"/proc/self/fd/{handle.fileno()}")
        handle.write("before\n")
        handle.flush()
        assert _audit(tiny_npz, "--json", str(link)).exit_code in (0, 1)
    assert link.is_symlink() and os.readlink(link).startswith("/proc/self/fd/")
    text = log.read_text()
    assert text.startswith("before\n{") and json.loads(text[len("before\n"):])["schema_version"] == 1


@pytest.mark.parametrize("kind", ["folder", "socket"])
def test_folders_and_sockets_are_refused_before_the_audit(tiny_npz, tmp_path, kind):
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    out = _audit(tiny_npz, "--json", str(path))
    assert out.exit_code == 2 and f"is a {kind}" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert (path.is_dir() if kind == "folder" else stat.S_ISSOCK(os.lstat(path).st_mode))


@pytest.mark.parametrize("where", ["config", "data", "inside"])
def test_the_step_summary_never_writes_into_inputs(tmp_path, monkeypatch, where):
    """$GITHUB_STEP_SUMMARY at the config, a data file or inside the data folder is refused with a warning
    (it was appended to); the audit's own result stands."""
    from tests.conftest import save_png

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for k in range(12):
        save_png(root / ("a" if k % 2 else "b") / f"{k}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    config = tmp_path / "audit.toml"
    config.write_text(f'[data]\nsource = "{root}"\n[model]\nfactory = "mlp"\n')
    path = {"config": config, "data": root / "a" / "1.png", "inside": root / "summary.md"}[where]
    before = path.read_bytes() if path.exists() else None
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    monkeypatch.delenv("DNNCHECK_NO_STEP_SUMMARY", raising=False)
    out = runner.invoke(app, ["audit", str(config), "--select", "imbalance", "--quiet"])
    assert out.exit_code in (0, 1) and "the job summary was not written" in out.stderr
    assert (path.read_bytes() if path.exists() else None) == before


def test_the_step_summary_at_a_fifo_does_not_hang(tiny_npz, tmp_path, monkeypatch):
    fifo = tmp_path / "summary"
    os.mkfifo(fifo)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(fifo))
    monkeypatch.delenv("DNNCHECK_NO_STEP_SUMMARY", raising=False)
    out = _audit(tiny_npz)
    assert out.exit_code in (0, 1) and "no process is reading" in out.stderr


def test_to_html_follows_the_cli_rules(tmp_path):
    """AuditResult.to_html("DATA/...") wrote inside the data folder; the CLI refuses that."""
    import dnncheck
    from tests.conftest import save_png

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for k in range(12):
        save_png(root / ("a" if k % 2 else "b") / f"{k}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    result = dnncheck.audit(str(root), model="mlp", select=["imbalance"])
    with pytest.raises(dnncheck.UserError, match="lies inside the data folder"):
        result.to_html(root / "report.html")
    with pytest.raises(dnncheck.UserError, match="is a folder"):
        result.to_html(tmp_path)
    assert not (root / "report.html").exists()
    result.to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")

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


def _read_fifo(path, ready, got, seconds: float = 60.0):
    """Everything written to FIFO `path`, opened for reading at once (non-blocking, then `ready` set):
    reads until a writer has written and closed it, or `seconds` pass."""
    import time

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    ready.set()
    data, deadline = b"", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:  # a writer is connected, nothing to read yet
                chunk = None
            if chunk:
                data += chunk
            elif chunk == b"" and data:  # the writer closed after writing: the end
                break
            else:  # no writer yet (a FIFO without writers reads as empty), or no data yet
                time.sleep(0.01)
    finally:
        os.close(fd)
    got.append(data)


def test_a_fifo_is_written_through_and_one_without_reader_is_refused(tiny_npz, tmp_path):
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = _audit(tiny_npz, "--json", str(fifo))
    assert out.exit_code == 2 and "no process is reading" in out.stderr  # not a hang
    got, ready = [], threading.Event()
    reader = threading.Thread(target=_read_fifo, args=(fifo, ready, got))
    reader.start()
    ready.wait(10)  # the reader holds the FIFO open before the audit looks for one (a busy machine raced it)
    try:
        out = _audit(tiny_npz, "--json", str(fifo))
    finally:
        reader.join(30)
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


# -- 2. label cardinality ----------------------------------------------------------------------------
def test_labels_as_ids_are_encoded_by_their_distinct_values(tmp_path):
    """Labels [0, 10**9, 123456] made classes "0".."10**9" (MemoryError at 6 GB); now three classes,
    named by their values, with the mapping in the report's notes."""
    rng = np.random.default_rng(0)
    data, out = tmp_path / "ids.npz", tmp_path / "r.json"
    np.savez(data, x_train=rng.integers(0, 255, (90, 8, 8), dtype=np.uint8),
             y_train=np.array([0, 10**9, 123456] * 30))
    result = runner.invoke(app, ["audit", str(data), "--select", "imbalance", "--model", "mlp", "--quiet",
                                 "--json", str(out)])
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(out.read_text())
    assert doc["data"]["classes"] == ["0", "123456", "1000000000"]
    assert any("0 -> 0, 123456 -> 1, 1000000000 -> 2" in n for n in doc["data"]["notes"])


def test_dense_integer_labels_keep_their_meaning():
    """Labels 1..10 keep class "0" (empty) so that imbalance can say "1-based"; a few gaps too."""
    from dnncheck.data.dataset import class_labels

    y, classes = class_labels(np.arange(1, 11).repeat(3), "y")
    assert classes == [str(i) for i in range(11)] and y.min() == 1
    assert class_labels(np.array([0, 2, 4, 6]), "y")[1] == ["0", "1", "2", "3", "4", "5", "6"]


def test_more_classes_than_the_limit_is_exit_2_naming_the_count(tmp_path):
    from dnncheck.data.dataset import MAX_CLASSES

    rng = np.random.default_rng(0)
    data = tmp_path / "many.npz"
    n = MAX_CLASSES + 1
    np.savez(data, x_train=rng.integers(0, 255, (n, 4, 4), dtype=np.uint8), y_train=np.arange(n) * 7)
    out = _audit(data)
    assert out.exit_code == 2 and f"{n:,} distinct labels" in out.stderr and "Traceback" not in out.output


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_label_is_one_line_naming_the_sample(tmp_path, bad):
    """A label of inf crashed while the error message was built."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    y = (np.arange(30) % 3).astype(float)
    y[7] = bad
    np.savez(data, x_train=rng.integers(0, 255, (30, 8, 8), dtype=np.uint8), y_train=y)
    out = _audit(data)
    assert out.exit_code == 2 and "labels must be finite; sample 7 has" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- 4. the renaming test needs a user-made split with enough samples per class -------------------------
def _predictions(per_class: int, carved: bool = False):
    from dnncheck.checks.imbalance import ImbalanceMeasurement, ProbePredictions

    y_true = np.repeat(np.arange(3), per_class)
    predictions = ProbePredictions("val", y_true, (y_true + 1) % 3, carved=carved)  # every class shifted by one
    counts = {"train": np.array([40, 40, 40]), "val": np.bincount(y_true)}
    return ImbalanceMeasurement("classification", ("a", "b", "c"), counts, predictions)


@pytest.mark.parametrize("per_class, carved, fails", [(30, False, True), (19, False, False), (30, True, False)])
def test_relabel_test_needs_enough_samples_and_a_user_split(per_class, carved, fails):
    from dnncheck.checks.imbalance import Imbalance

    check = Imbalance()
    verdict = check.judge(_predictions(per_class, carved), check.t)
    named = any("encoded differently" in f.message for f in verdict.findings)
    assert named is fails
    if not fails:
        assert verdict.metrics["relabel_test"].startswith("not run") and "renamed_accuracy" not in verdict.metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_carved_validation_split_never_reads_as_another_encoding(tmp_path, seed):
    """12 digits per class, validation carved by dnncheck: seeds 0..7 failed 3 of 8 before."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:12] for c in range(10)])
    data, out = tmp_path / "d.npz", tmp_path / "r.json"
    np.savez(data, x_train=(digits.images[keep] * 16).astype(np.uint8), y_train=digits.target[keep])
    result = runner.invoke(app, ["audit", str(data), "--select", "imbalance", "--seed", str(seed), "--quiet",
                                 "--json", str(out)])
    check = json.loads(out.read_text())["checks"][0]
    assert "encoded differently" not in json.dumps(check["findings"]), result.output
    assert check["metrics"]["relabel_test"] == "not run: dnncheck made the val split from train"


# -- 3. the record cache -------------------------------------------------------------------------------
@pytest.fixture
def pngs(tmp_path, monkeypatch):
    from tests.conftest import save_png

    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):
        paths.append(tmp_path / "photos" / f"{k}.bmp")
        save_png(paths[-1], rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    return paths


def _rewrite_same_size_keep_mtime(path):
    """Another image of the same size (BMP: fixed size), written in place, its mtime put back."""
    from PIL import Image

    before = os.stat(path)
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns


def test_a_file_replaced_with_size_and_mtime_restored_is_read_again(pngs):
    from dnncheck.data.scan import ScanSettings, scan_files

    first = scan_files(pngs, ScanSettings(workers=1))
    _rewrite_same_size_keep_mtime(pngs[1])
    again = scan_files(pngs, ScanSettings(workers=1))
    assert again.decoded == 1  # ctime (and, for a replaced file, the inode) changed
    assert again.records[1]["digest"] != first.records[1]["digest"]


def test_verify_cache_rehashes_when_the_key_cannot_tell(pngs, monkeypatch):
    """A file system whose times and inode do not change (simulated: keys of path and size only):
    the cache trusts its key, --verify-cache hashes the content and reads the changed file again."""
    from dnncheck.data import cache
    from dnncheck.data.scan import ScanSettings, scan_files

    monkeypatch.setattr(cache, "file_key", lambda p: f"{os.path.abspath(p)}\0{os.stat(p).st_size}")
    first = scan_files(pngs, ScanSettings(workers=1))
    _rewrite_same_size_keep_mtime(pngs[3])
    trusted = scan_files(pngs, ScanSettings(workers=1))
    assert trusted.decoded == 0 and trusted.records.tobytes() == first.records.tobytes()  # what it trusts
    verified = scan_files(pngs, ScanSettings(workers=1, verify_cache=True))
    assert verified.decoded == 1 and verified.records[3]["digest"] != first.records[3]["digest"]
    assert any("1 file(s) changed" in n for n in verified.notes)


def test_a_busy_cache_is_bypassed_after_a_bounded_wait_and_never_deleted(pngs, monkeypatch):
    import sqlite3
    import time

    from dnncheck.data import cache
    from dnncheck.data.scan import ScanSettings, scan_files

    scan_files(pngs, ScanSettings(workers=1))
    monkeypatch.setattr(cache, "LOCK_WAIT_SECONDS", 0.3)
    db_path = cache.cache_dir() / cache.DB_NAME
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another audit mid-transaction
    try:
        started = time.monotonic()
        scan = scan_files(pngs, ScanSettings(workers=1))
        waited = time.monotonic() - started
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert scan.decoded == len(pngs) and scan.records["ok"].all()
    assert len(scan.notes) == 1 and "busy" in scan.notes[0] and "left it in place" in scan.notes[0]
    assert waited < 30 and db_path.is_file()
    assert scan_files(pngs, ScanSettings(workers=1)).decoded == 0  # the entries survived


def test_failed_files_cost_a_small_cache_entry(tmp_path, monkeypatch):
    import sqlite3

    from dnncheck.data import cache
    from dnncheck.data.records import RECORD_DTYPE
    from dnncheck.data.scan import ScanSettings, scan_files

    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(tmp_path / "cache"))
    paths = []
    for k in range(50):
        paths.append(tmp_path / "empty" / f"{k}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_bytes(b"")
    first = scan_files(paths, ScanSettings(workers=1))
    assert not first.records["ok"].any()
    with sqlite3.connect(cache.cache_dir() / cache.DB_NAME) as db:
        sizes = [n for (n,) in db.execute("SELECT length(blob) FROM records")]
    assert len(sizes) == 50 and max(sizes) < RECORD_DTYPE.itemsize // 20
    again = scan_files(paths, ScanSettings(workers=1))
    assert again.decoded == 0 and again.reasons == first.reasons and again.records.tobytes() == first.records.tobytes()


# -- 5. worker processes -----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie is dead
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_workers_die_when_the_audit_is_killed(tmp_path):
    """SIGKILL of the audit left its spawn workers and the resource tracker (~70 MB each) blocked forever."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text("import time\n"
                      "from dnncheck.data.scan import _pool\n"
                      "if __name__ == '__main__':\n"  # spawn workers import this file again
                      "    pool = _pool(2)\n"
                      "    futures = [pool.submit(time.sleep, 0.5) for _ in range(4)]\n"
                      "    [f.result() for f in futures]\n"  # the workers ran their start-up
                      "    from multiprocessing import resource_tracker\n"
                      "    tracker = resource_tracker._resource_tracker._pid\n"
                      "    print(' '.join(map(str, [*pool._processes, tracker])), flush=True)\n"
                      "    time.sleep(600)\n")
    audit = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        workers = [int(p) for p in audit.stdout.readline().split()]
        assert len(workers) == 3 and all(_alive(p) for p in workers)  # two workers and the resource tracker
    finally:
        audit.send_signal(signal.SIGKILL)
        audit.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_workers_are_capped_at_twice_the_cores_with_a_note(tmp_path):
    from dnncheck.data.scan import ScanSettings, usable_cores

    settings = ScanSettings(workers=1024)
    assert settings.worker_count == 2 * usable_cores()
    assert settings.capped_note.startswith(f"workers = 1024 capped at {2 * usable_cores()}")
    assert ScanSettings(workers=1).capped_note is None and ScanSettings().worker_count == usable_cores()
    out = tmp_path / "r.json"
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3)
    assert _audit(data, "--workers", "1024", "--json", str(out)).exit_code in (0, 1)
    assert any("capped at" in n for n in json.loads(out.read_text())["data"]["notes"])


# -- 6. exceptions and exits from user code, NaN from the model ----------------------------------------
USER_CODE = '''
import sys
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, how):
        super().__init__()
        self.fc = nn.Linear(in_channels * image_size[0] * image_size[1], num_classes)
        self.how = how

    def forward(self, x):
        if self.how == "exit":
            sys.exit(7)
        if self.how == "raise":
            raise ValueError("boom in forward")
        if self.how == "exit-in-training" and self.training:
            sys.exit(5)
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.how == "nan" else out


def model(how):
    return lambda num_classes, in_channels, image_size: Net(num_classes, in_channels, image_size, how)


exits, raises, nan, exits_in_training = model("exit"), model("raise"), model("nan"), model("exit-in-training")


class Items(torch.utils.data.Dataset):
    def __init__(self, how):
        self.how = how

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i == 5 and self.how == "raise":
            raise OSError("disk gone")
        if i == 5 and self.how == "exit":
            sys.exit(3)
        return torch.rand(1, 8, 8), i % 2


def data_raises():
    return {"train": Items("raise")}


def data_exits():
    return {"train": Items("exit")}
'''


@pytest.mark.parametrize("spec, select, said", [
    ("--model=hostile_user:exits", "loss-sanity", "on 2 training inputs of shape (2, 1, 8, 8) its forward called sys.exit(7) at hostile_user.py:"),
    ("--model=hostile_user:raises", "loss-sanity", "its forward raised ValueError at hostile_user.py:"),
    ("--model=hostile_user:exits_in_training", "overfit", "user code called sys.exit(5) at hostile_user.py:19 in forward"),
    ("python:hostile_user:data_raises", "imbalance", "reading item 5 of 'train' raised OSError at hostile_user.py:"),
    ("python:hostile_user:data_exits", "imbalance", "reading item 5 of 'train' called sys.exit(3) at hostile_user.py:"),
])
def test_user_code_that_raises_or_exits_is_one_line_exit_2(tmp_path, monkeypatch, spec, select, said):
    """sys.exit(7) in a model's forward made dnncheck exit 7; a Dataset's OSError read "not an (x, y) pair"."""
    (tmp_path / "hostile_user.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    target = spec if spec.startswith("python:") else "sklearn:digits"
    extra = [spec] if spec.startswith("--model") else []
    out = runner.invoke(app, ["audit", target, *extra, "--select", select, "--quiet", "--budget", "30"])
    assert out.exit_code == 2, out.output
    assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_nan_model_outputs_are_findings_not_a_crash(tmp_path, monkeypatch):
    """A model whose outputs are NaN crashed overfit ("All-NaN slice", exit 3)."""
    (tmp_path / "hostile_user.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out_json = tmp_path / "r.json"
    out = runner.invoke(app, ["audit", "sklearn:digits", "--model", "hostile_user:nan", "--select",
                              "overfit,loss-sanity", "--quiet", "--json", str(out_json)])
    assert out.exit_code == 1, out.output
    checks = {c["slug"]: c for c in json.loads(out_json.read_text())["checks"]}
    assert checks["overfit"]["status"] == "fail" and checks["loss-sanity"]["status"] == "fail"
    said = json.dumps(checks["overfit"]["findings"])
    assert "non-finite from the first step" in said and "not finite in any epoch" in said


# -- 7. odd images read as the user's loader reads them --------------------------------------------------
def _photo_folder(root, rng, n=10):
    from tests.conftest import save_png

    for c in ("a", "b"):
        for k in range(n):
            save_png(root / c / f"{k}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))


def _fidelity(root, tmp_path):
    out = tmp_path / "fidelity.json"
    result = runner.invoke(app, ["audit", str(root), "--select", "input-fidelity", "--quiet", "--json", str(out),
                                 "--no-cache"])
    assert result.exit_code in (0, 1), result.output
    check = json.loads(out.read_text())["checks"][0]
    return check, json.dumps(check["findings"])


def test_odd_images_are_read_as_torchvisions_loader_reads_them_and_said(tmp_path):
    """A 12-bit PNG was divided by 65535 (mean 8) where torchvision's loader clips (mean 247); NaN in a
    float TIFF silently became 0; EXIF orientation and extra frames were not mentioned."""
    from PIL import Image
    from torchvision.datasets.folder import pil_loader

    from dnncheck.data.images import decode_image

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    _photo_folder(root, rng)
    clean, said = _fidelity(root, tmp_path)
    assert clean["status"] == "pass" and clean["metrics"]["clipped_images"] == 0
    assert clean["metrics"]["exif_rotated_images"] == clean["metrics"]["multi_frame_files"] == 0

    twelve = root / "a" / "scan12.png"
    Image.fromarray(rng.integers(0, 4096, (16, 16)).astype(np.uint16)).save(twelve)
    assert Image.open(twelve).mode == "I;16"
    ours = decode_image(twelve, 256)[0]
    theirs = np.asarray(pil_loader(str(twelve)))
    assert ours[..., 0].tolist() == theirs[..., 0].tolist()  # the pixels the model sees, not a rescaling
    floats = rng.random((16, 16)).astype(np.float32) * 200
    floats[2, 3] = np.nan
    Image.fromarray(floats).save(root / "b" / "depth.tiff")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(root / "a" / "phone.jpg", exif=exif)
    assert decode_image(root / "a" / "phone.jpg", 256)[0].shape[:2] == (16, 24)  # not rotated, as pil_loader
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).convert("P") for _ in range(3)]
    frames[0].save(root / "b" / "anim.gif", save_all=True, append_images=frames[1:])

    odd, said = _fidelity(root, tmp_path)
    assert odd["status"] == "warn"
    assert "1 high-bit-depth image(s) (I;16) are clipped to 0..255" in said and "a/scan12.png" in said
    assert "1 float image(s) hold 1 NaN/Inf pixel(s)" in said and "b/depth.tiff" in said
    assert "1 photo(s) carry an EXIF orientation" in said and '"a/phone.jpg": 6' in said
    assert "1 file(s) hold several frames" in said and '"b/anim.gif": 3' in said


@pytest.mark.parametrize("link, to", [("a/etc", "/etc"), ("c", "/proc"), ("data.csv", "/etc/passwd")])
def test_links_into_system_folders_are_refused_with_the_path(tmp_path, link, to):
    """A linked system folder put every file name into the reports; a link to /proc walked the file
    system; a .csv linked to a system file got an error quoting its first line."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    _photo_folder(root, rng, n=4)
    place = tmp_path / link if link.endswith(".csv") else root / link
    place.symlink_to(to)
    out = runner.invoke(app, ["audit", str(place if link.endswith(".csv") else root), "--select", "imbalance",
                              "--quiet", "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 2 and f"{place}:" in out.stderr and f"(a link to {to})" in out.stderr
    assert f"lies in the system folder {to.rsplit('/', 1)[0] if to.count('/') > 1 else to}" in out.stderr
    assert "root:" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_worker_warnings_become_notes_not_stderr(tmp_path, monkeypatch):
    """Pillow's warning on a palette image with byte transparency reached stderr from the workers,
    also under --quiet; it is a note of the report now."""
    import subprocess
    import sys

    from PIL import Image

    from dnncheck.data import scan

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    _photo_folder(root, rng, n=40)  # 80 files: the pass runs in worker processes (scan.INLINE_BELOW)
    palette = Image.fromarray(rng.integers(0, 4, (16, 16), dtype=np.uint8)).convert("P")
    palette.save(root / "a" / "clear.png", transparency=bytes([0, 255, 128]))
    assert 81 >= scan.INLINE_BELOW
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "dnncheck", "audit", str(root), "--select", "input-fidelity",
                           "--quiet", "--workers", "2", "--no-cache", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    notes = json.loads(out.read_text())["data"]["notes"]
    assert any("Palette images with Transparency expressed in bytes" in n for n in notes)


@pytest.mark.parametrize("per_class, named", [(30, True), (5, False)])
def test_low_recall_is_judged_only_on_enough_evaluated_samples(per_class, named):
    from dnncheck.checks.imbalance import Imbalance, ImbalanceMeasurement, ProbePredictions

    y_true = np.repeat(np.arange(3), per_class)
    y_pred = y_true.copy()
    y_pred[y_true == 2] = 0  # class c is never recognised
    counts = {"train": np.array([40, 40, 40]), "val": np.bincount(y_true)}
    m = ImbalanceMeasurement("classification", ("a", "b", "c"), counts, ProbePredictions("val", y_true, y_pred))
    verdict = Imbalance.judge(m, Imbalance().t)
    assert any("rarely recognises: c (recall 0.00)" in f.message for f in verdict.findings) is named
    assert verdict.metrics["per_class_recall"]["c"] == 0.0

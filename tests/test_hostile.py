"""Hostile and unusual input: a user's file is never destroyed, a refusal is one line and exit 2
(never a traceback), a label is never silently wrong, and valid data never crashes a check."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import save_png
from dnncheck.cli import app


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """The command in this process (typer's CliRunner keeps stderr apart): its exit code, stdout and
    stderr as a user sees them, without paying a Python start and a torch import per call."""
    import contextlib

    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure of the test, shown as such
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def refused(proc, *words) -> None:
    """Exit 2 with exactly one line on stderr that says what is wrong; no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("dnncheck: error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def arrays(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (60, 8, 8), dtype=np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=np.arange(60) % 3)
    return path


# -- outputs never destroy inputs ------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--json", "--html", "--junit"])
def test_a_report_path_onto_the_data_is_refused_and_the_data_kept(arrays, flag):
    before = arrays.read_bytes()
    refused(run_cli("audit", str(arrays), flag, str(arrays), "--select", "DNC1", "--quiet"), flag, "never overwrites")
    assert arrays.read_bytes() == before


def test_a_hard_link_of_an_input_and_the_inside_of_a_data_folder_are_refused(arrays, tmp_path, image_folder):
    link = tmp_path / "link.json"
    os.link(arrays, link)
    refused(run_cli("audit", str(arrays), "--json", str(link), "--select", "DNC1", "--quiet"), "data source")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    refused(run_cli("audit", str(arrays), "--model", "mlp", "--weights", str(weights), "--junit", str(weights),
                    "--quiet"), "weights file")
    root = image_folder()
    refused(run_cli("audit", str(root), "--html", str(root / "report.html"), "--quiet"), "inside the data folder")
    assert not (root / "report.html").exists() and weights.read_bytes() == b"weights"


def test_curves_never_overwrites_its_history(tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps({"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]}))
    refused(run_cli("curves", str(history), "--json", str(history)), "history")
    assert json.loads(history.read_text())["loss"] == [1.0, 0.5]


def test_json_dash_is_stdout_and_reports_are_written_whole(arrays, tmp_path):
    proc = run_cli("audit", str(arrays), "--select", "DNC1", "--json", "-", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["checks"][0]["id"] == "DNC1"
    assert not (tmp_path / "-").exists()
    refused(run_cli("audit", str(arrays), "--json", "-", "--junit", "-", "--quiet"), "only one report")
    out = tmp_path / "r.json"
    assert run_cli("audit", str(arrays), "--select", "DNC1", "--json", str(out), "--quiet").returncode == 0
    assert json.loads(out.read_text())["status"] == "pass"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as a report written in place


# -- files that are not what they claim ---------------------------------------------------------------
def test_fifo_as_target_or_baseline_is_refused_without_blocking(arrays, tmp_path):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    refused(run_cli("audit", str(fifo), "--quiet"), "not a regular file")
    refused(run_cli("audit", str(arrays), "--baseline", str(fifo), "--quiet"), "--baseline", "not a regular file")


def test_pathological_files_are_one_line_refusals(arrays, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused(run_cli("curves", str(deep)), "nested too deeply")
    refused(run_cli("audit", str(arrays), "--baseline", str(deep), "--select", "DNC1", "--quiet"), "--baseline")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    refused(run_cli("audit", str(arrays), "--model", "mlp", "--weights", str(empty), "--quiet"), "state_dict")
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    refused(run_cli("audit", str(text), "--quiet"), "not an .npz archive")


def test_an_npz_declaring_terabytes_is_refused_before_loading(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (1_024_000, 1000, 1000)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + b"\0" * 64)
        labels = io.BytesIO()
        np.save(labels, np.zeros(10, dtype=np.int64))
        archive.writestr("y_train.npy", labels.getvalue())
    refused(run_cli("audit", str(path), "--quiet"), "GiB", "more than this machine")


@pytest.mark.parametrize("flag, value, words", [
    ("--seed", "4294967296", ("probe.seed", "4294967295")),
    ("--budget", "1e12", ("probe.budget_seconds",)),
])
def test_out_of_range_settings_are_refused(arrays, flag, value, words):
    refused(run_cli("audit", str(arrays), flag, value, "--quiet"), *words)


def test_an_absurd_image_size_is_refused(arrays, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[data]\nsource = '{arrays}'\nimage_size = [100000, 100000]\n")
    refused(run_cli("audit", str(config), "--quiet"), "image_size", "4096")


# -- per-file failures are skipped samples, not the end of the audit -------------------------------
def test_an_oversized_image_a_fifo_and_a_device_link_are_skipped_and_counted(tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(20):
            save_png(root / c / f"{i}.png", rng.integers(0, 255, (12, 12), dtype=np.uint8))
    old = Image.MAX_IMAGE_PIXELS
    Image.new("L", (200, 200)).save(root / "a" / "huge.png")  # huge for a lowered limit, as 20000x20000 is normally
    os.mkfifo(root / "b" / "pipe.png")
    os.symlink("/dev/zero", root / "b" / "zero.png")
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = (f"from PIL import Image; Image.MAX_IMAGE_PIXELS = 1000\n"
            f"import sys; sys.argv = ['dnncheck', 'audit', {str(root)!r}, '--select', 'DNC1', '--json', {str(out)!r}, '--quiet']\n"
            f"from dnncheck.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    Image.MAX_IMAGE_PIXELS = old
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(out.read_text())
    assert result["data"]["unreadable"] == 3
    text = json.dumps(result["checks"][0]["findings"])
    assert "too large" in text and "not a regular file" in text


def test_a_symlink_loop_neither_multiplies_nor_relabels_images(tmp_path):
    root = tmp_path / "loop"
    for c in ("a", "b"):
        for i in range(20):
            save_png(root / c / f"{i}.png", np.full((8, 8), 40 if c == "a" else 200, dtype=np.uint8))
    os.symlink("..", root / "a" / "loop")
    from dnncheck.config import AuditConfig
    from dnncheck.data import load_dataset

    ds = load_dataset(AuditConfig(source=str(root)))
    total = sum(len(p) for p in ds.splits.values())
    assert total == 40
    for part in ds.splits.values():
        for sample_id, label in zip(part.ids, part.y):
            assert sample_id.split("/")[0] == ds.classes[label]


# -- labels are never silently wrong --------------------------------------------------------------------
def test_one_hot_labels_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "onehot.npz"
    np.savez(path, x_train=np.zeros((600, 8, 8), np.uint8), y_train=np.eye(10)[np.arange(600) % 10])
    refused(run_cli("audit", str(path), "--quiet"), "(600, 10)", "argmax")


def test_a_made_split_never_takes_a_class_out_of_train(tmp_path):
    from dnncheck.config import AuditConfig
    from dnncheck.data import load_dataset

    y = np.arange(41) % 2
    y[-1] = 2  # class 2 has a single sample
    path = tmp_path / "single.npz"
    np.savez(path, x_train=np.random.default_rng(0).integers(0, 255, (41, 8, 8), dtype=np.uint8), y_train=y)
    for seed in range(5):
        ds = load_dataset(AuditConfig(source=str(path), seed=seed))
        assert set(ds.splits["train"].y.tolist()) == {0, 1, 2}


# -- user text, user code, library noise ----------------------------------------------------------
def test_escape_codes_in_class_names_never_reach_the_terminal(tmp_path):
    root = tmp_path / "esc"
    evil = "cat\x1b[2J\x1b]8;;http://x\x1b\\link\x07"
    for c in (evil, "dog"):
        for i in range(10):
            save_png(root / c / f"{i}.png", np.full((8, 8), 30 if c == "dog" else 220, dtype=np.uint8))
    proc = run_cli("audit", str(root), "--select", "DNC1,DNC9", "--model", "mlp")
    assert proc.returncode in (0, 1), proc.stderr
    assert "cat" in proc.stdout and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "[2J" not in proc.stdout and "http://x" not in proc.stdout  # no residue of the sequences either


def test_user_code_that_exits_or_warns(tmp_path, arrays):
    (tmp_path / "usernets.py").write_text(
        "import sys, warnings\nimport torch.nn as nn\n"
        "def quits(num_classes, in_channels, image_size):\n    sys.exit(5)\n"
        "class Loud(nn.Module):\n"
        "    def __init__(self, n, c, hw):\n        super().__init__(); self.f = nn.Sequential(nn.Flatten(), nn.Linear(c * hw[0] * hw[1], n))\n"
        "    def forward(self, x):\n        warnings.warn('loud model warns every call')\n        return self.f(x)\n"
        "def loud(num_classes, in_channels, image_size):\n    return Loud(num_classes, in_channels, image_size)\n")
    refused(run_cli("audit", str(arrays), "--model", "usernets:quits", "--quiet", cwd=tmp_path), "sys.exit(5)")
    out = tmp_path / "r.json"
    proc = run_cli("audit", str(arrays), "--model", "usernets:loud", "--select", "DNC4", "--json", str(out), "--quiet",
                   cwd=tmp_path)
    assert proc.returncode in (0, 1) and proc.stderr == ""  # the warning went into the report, not onto stderr
    assert any("loud model warns" in n for n in json.loads(out.read_text())["data"]["notes"])
    assert not (tmp_path / "__pycache__").exists()


def test_init_never_writes_through_a_dangling_symlink(tmp_path):
    link = tmp_path / "dnncheck.toml"
    link.symlink_to(tmp_path / "elsewhere" / "target.toml")
    refused(run_cli("init", str(link)), "symbolic link")
    assert not (tmp_path / "elsewhere").exists()


def test_undecodable_file_names_still_give_every_report(tmp_path):
    root = tmp_path / "names"
    bad = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8, a surrogate escape in Python
    for c in ("a", "b"):
        for i in range(10):
            save_png(root / c / (f"{bad}{i}.png" if c == "a" else f"{i}.png"),
                     np.full((8, 8), 30 if c == "a" else 220, dtype=np.uint8))
    save_png(root / "a" / f"{bad}-odd.png", np.zeros((20, 8), dtype=np.uint8))  # a finding that names the file
    html, junit, js = tmp_path / "r.html", tmp_path / "r.xml", tmp_path / "r.json"
    result = CliRunner().invoke(app, ["audit", str(root), "--select", "DNC1", "--quiet", "--html", str(html),
                                      "--junit", str(junit), "--json", str(js)])
    assert result.exit_code in (0, 1), result.output
    assert html.stat().st_size > 1000 and junit.stat().st_size > 100 and json.loads(js.read_text())["checks"]


# -- degenerate but valid data gives results, never a crash ------------------------------------------
def _statuses(path, *flags) -> dict:
    out = path.parent / "result.json"
    result = CliRunner().invoke(app, ["audit", str(path), "--model", "mlp", "--json", str(out), "--quiet",
                                      *flags])
    assert result.exit_code in (0, 1), result.output
    return {c["slug"]: c for c in json.loads(out.read_text())["checks"]}


def test_many_classes_with_two_samples_and_a_class_with_one(tmp_path):
    rng = np.random.default_rng(0)
    many = tmp_path / "many" / "d.npz"
    many.parent.mkdir()
    np.savez(many, x_train=rng.integers(0, 255, (1000, 8, 8), dtype=np.uint8), y_train=np.repeat(np.arange(500), 2))
    config = many.parent / "c.toml"  # UMAP off: its compile costs seconds, and silhouette/k-NN are what crashed
    config.write_text(f"[data]\nsource = '{many}'\n[checks.separability]\numap = false\n")
    checks = _statuses(config, "--select", "separability,external-validation,label-noise,imbalance")
    assert not [s for s, c in checks.items() if c["status"] == "error"], checks
    y = np.arange(60) % 3
    y[-1] = 3
    one = tmp_path / "one" / "d.npz"
    one.parent.mkdir()
    np.savez(one, x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=y)
    checks = _statuses(one, "--select", "separability,label-noise,imbalance")
    assert not [s for s, c in checks.items() if c["status"] == "error"], checks
    assert checks["label-noise"]["status"] == "skip" and "single" in checks["label-noise"]["summary"]


def test_a_model_returning_a_tuple_is_audited_on_its_logits(tmp_path, arrays):
    (tmp_path / "tuplenet.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n, c, hw):\n        super().__init__(); self.f = nn.Sequential(nn.Flatten(), nn.Linear(c * hw[0] * hw[1], n))\n"
        "    def forward(self, x):\n        out = self.f(x)\n        return out, out.detach() * 0\n"
        "def build(num_classes, in_channels, image_size):\n    return Net(num_classes, in_channels, image_size)\n")
    out = tmp_path / "r.json"
    proc = run_cli("audit", str(arrays), "--model", "tuplenet:build", "--select", "loss-sanity,label-noise,overfit",
                   "--json", str(out), "--quiet", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(out.read_text())
    assert all(c["status"] != "error" for c in result["checks"])
    assert any("returns a tuple" in n for n in result["data"]["notes"])
    loss = {c["slug"]: c for c in result["checks"]}["loss-sanity"]
    assert loss["metrics"]["output_units"] == 3


def test_a_parameterless_model_is_named_as_such(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (60, 2, 2), dtype=np.uint8), y_train=np.arange(60) % 4)
    (tmp_path / "flat.py").write_text("import torch.nn as nn\ndef build(num_classes, in_channels, image_size):\n"
                                      "    return nn.Flatten()\n")
    out = tmp_path / "r.json"
    proc = run_cli("audit", str(path), "--model", "flat:build", "--select", "loss-sanity", "--json", str(out),
                   "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    check = json.loads(out.read_text())["checks"][0]
    messages = " ".join(f["message"] for f in check["findings"])
    assert "no parameters" in messages and "sigmoid" not in messages


def test_one_based_labels_are_named(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (300, 8, 8), dtype=np.uint8), y_train=np.arange(300) % 3 + 1)
    check = _statuses(path, "--select", "imbalance")["imbalance"]
    assert check["status"] == "fail" and "1-based" in check["summary"]
    assert check["metrics"]["empty_classes"] == 1


def test_ctrl_c_exits_130_with_a_message_and_no_report(tmp_path):
    import signal
    import time

    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "dnncheck", "audit", "sklearn:digits", "--json", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # well into the audit (it takes 25 s or more), wherever the machine's load puts it
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["dnncheck: interrupted; no report was written"]
    assert not out.exists()


def test_a_ctrl_c_a_library_swallows_still_stops_the_audit(tmp_path, monkeypatch):
    """A Ctrl-C landing in a ctypes callback (numba compiling UMAP) is printed and swallowed there;
    the audit ran on to exit 0 and wrote its report. Now it stops after that check: 130, no report."""
    import signal

    from typer.testing import CliRunner

    from dnncheck.checks.imbalance import Imbalance
    from dnncheck.cli import app

    measure = Imbalance.measure

    def swallowing(self, ctx):
        # A real ctypes callback, as llvmlite's: Python prints the exception as "Exception ignored"
        # through sys.unraisablehook and the C caller goes on.
        import ctypes

        @ctypes.CFUNCTYPE(None)
        def callback():
            signal.raise_signal(signal.SIGINT)

        callback()
        return measure(self, ctx)

    printed_as_ignored = []

    def record_ignored(unraisable):
        printed_as_ignored.append(unraisable.exc_value)

    monkeypatch.setattr(Imbalance, "measure", swallowing)
    monkeypatch.setattr(sys, "unraisablehook", record_ignored)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["audit", "sklearn:digits", "--select", "input-fidelity,imbalance",
                                      "--json", str(out), "--quiet"])
    assert result.exit_code == 130, result.output
    assert not out.exists()
    assert printed_as_ignored == []  # the remembered Ctrl-C is not printed as a traceback
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert sys.unraisablehook is record_ignored  # and so is the hook for swallowed exceptions


@pytest.mark.parametrize("setting, words", [
    ("[model]\nloss = 'nosuchpkg.losses:focal'\n", ["loss", "nosuchpkg"]),
    ("[model]\nloss = 'userloss:missing'\n", ["loss", "missing"]),
    ("[data]\nnormalize = {mean = [0.5, 0.5, 0.5], std = [0.2, 0.2, 0.2]}\n", ["data.normalize", "mean has 3", "1 channel"]),
])
def test_bad_loss_or_normalize_is_refused_before_any_check_runs(tmp_path, monkeypatch, setting, words):
    """prepare() resolves the loss and the normalisation spec: exit 2 before the first check, not
    after DNC1 and DNC6 have run (and no report is written)."""
    import dnncheck.runner as runner

    (tmp_path / "userloss.py").write_text("def focal(out, y):\n    return out.sum()\n")
    text = "[data]\nsource = 'sklearn:digits'\n" + setting
    if setting.startswith("[data]"):  # one [data] table: merge the two
        text = "[data]\nsource = 'sklearn:digits'\n" + setting.split("\n", 1)[1]
    (tmp_path / "dnncheck.toml").write_text(text)
    ran = []
    monkeypatch.setattr(runner, "run_check", lambda check, ctx: ran.append(check.id))
    # input-fidelity trains nothing and never asks for the loss or the normaliser: only prepare() can refuse
    proc = run_cli("audit", str(tmp_path / "dnncheck.toml"), "--select", "input-fidelity", "--json",
                   str(tmp_path / "r.json"), "--quiet", cwd=tmp_path)
    refused(proc, *words)
    assert ran == [] and not (tmp_path / "r.json").exists()

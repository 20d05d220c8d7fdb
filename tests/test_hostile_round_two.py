"""Hostile input, round two (issue 29): the cache, odd images, limits, every threshold's range, the
Python API's arguments, and a seeded fuzz of configs and command lines. Each case ends in exit 2 with
one line, or in a correct audit; none in a traceback, a hang or a changed user file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import save_png, write_config
from test_hostile import refused, run_cli

import dnncheck
from dnncheck.checks import CHECKS, lookup
from dnncheck.errors import UserError


@pytest.fixture
def digits_npz(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path / "data" / "digits.npz"
    path.parent.mkdir()
    np.savez(path, x_train=(digits.images[:300] * 16).astype(np.uint8), y_train=digits.target[:300])
    return path


@pytest.fixture
def photos(tmp_path):
    """A small class folder of textured 48 px images (enough for the data pass and its cache)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c in ("a", "b"):
        for i in range(12):
            base = rng.integers(0, 255, (6, 6, 3)).astype(np.uint8)
            save_png(root / c / f"{i:02d}.png", np.kron(base, np.ones((8, 8, 1), np.uint8)))
    return root


def tree_digest(*roots: Path) -> str:
    """Every file's path and bytes under the roots: "no file changed"."""
    h = hashlib.sha256()
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# -- thresholds: a range each, checked at load ---------------------------------------------------------
def test_every_numeric_threshold_has_a_range_that_admits_its_default():
    for check in CHECKS:
        for name, (default, _) in check.thresholds.items():
            if isinstance(default, (bool, str)):
                continue
            assert name in check.ranges, f"{check.slug}.{name} has no range"
            assert check.ranges[name].admits(default), f"{check.slug}.{name} = {default} outside its own range"
        for low, high in check.ordered:
            assert check.thresholds[low][0] <= check.thresholds[high][0]
        check()  # the defaults themselves load


@pytest.mark.parametrize("slug,name,value,words", [
    ("overfit", "max_steps", -1, "an integer between 1 and 100,000"),
    ("pixel-attack", "flip_evaluations", -1, "between 1 and 10,000"),
    ("separability", "max_samples", 0, "between 10 and 10,000"),
    ("separability", "max_samples", -1, "between 10"),
    ("label-noise", "folds", 100000, "between 2 and 20"),  # it never returned
    ("imbalance", "ratio_fail", float("nan"), "out of range"),
    ("split-leakage", "candidate_cosine", 0.0, "between 0.5 and 1"),
    ("gradient-health", "exploding_norm", float("inf"), "above 0"),
])
def test_an_impossible_threshold_is_refused_naming_key_value_and_range(slug, name, value, words):
    with pytest.raises(UserError) as err:
        lookup(slug, "test")(**{name: value})
    message = str(err.value)
    assert f"[checks.{slug}] {name} = " in message and words in message and "\n" not in message


def test_a_warning_level_above_its_failing_level_is_refused():
    with pytest.raises(UserError, match=r"ratio_warn = 3.0 must not exceed ratio_fail = 2.0"):
        lookup("imbalance", "test")(ratio_fail=2.0)


def test_the_cli_refuses_a_threshold_out_of_range_before_reading_data(tmp_path):
    config = write_config(tmp_path, '[data]\nsource = "nowhere.npz"\n[checks.overfit]\nmax_steps = -1\n')
    refused(run_cli("audit", str(config), "--quiet"), "max_steps = -1", "between 1 and 100,000")


def test_explain_shows_each_thresholds_valid_values():
    out = run_cli("explain", "overfit").stdout
    assert "100,000" in out and "1e12" in out and "max_steps" in out


@pytest.mark.parametrize("line", ["lr = inf", "lr = nan", "weight_decay = inf", "lr = -1"])
def test_non_finite_training_settings_are_refused(tmp_path, line):
    # lr = inf crashed the probe natively (a segmentation fault)
    config = write_config(tmp_path, f'[data]\nsource = "sklearn:digits"\n[train]\n{line}\n')
    refused(run_cli("audit", str(config), "--quiet"), line.split()[0])


# -- selections, walks, targets, names, nesting ------------------------------------------------------
def test_empty_selections_are_refused(tmp_path):
    refused(run_cli("audit", "sklearn:digits", "--select", "", "--quiet"), "--select names no check")
    refused(run_cli("audit", "sklearn:digits", "--select", " , ", "--quiet"), "--select names no check")
    config = write_config(tmp_path, '[data]\nsource = "sklearn:digits"\n[checks]\nselect = []\n')
    refused(run_cli("audit", str(config), "--quiet"), "checks.select = []", "non-empty")


def test_a_folder_nested_1200_levels_is_refused_not_a_recursion_error(tmp_path):
    root = tmp_path / "deep"
    current = root / "a"
    os.makedirs(current)
    save_png(root / "b" / "x.png", np.zeros((8, 8), np.uint8))
    levels = [current]
    for _ in range(1200):  # os.makedirs itself recurses per level
        levels.append(levels[-1] / "d")
        os.mkdir(levels[-1])
    save_png(levels[-1] / "x.png", np.zeros((8, 8), np.uint8))
    try:
        refused(run_cli("audit", str(root), "--select", "input-fidelity", "--quiet"), "nest more than 64 levels")
    finally:  # removed here, bottom up: pytest's own clean-up (shutil.rmtree) recurses per level too
        (levels[-1] / "x.png").unlink()
        for folder in reversed(levels[1:]):
            folder.rmdir()


@pytest.mark.parametrize("target,words", [("/", "holds system folders"), ("/proc", "system folder /proc"),
                                          ("/sys", "system folder /sys"), ("/dev", "system folder /dev"),
                                          ("/usr", "holds system folders")])
def test_the_root_and_system_folders_are_refused_as_target(target, words):
    refused(run_cli("audit", target, "--select", "input-fidelity", "--quiet"), words)


def test_overlong_report_names_are_refused_before_the_audit(tmp_path, digits_npz):
    started = time.monotonic()
    refused(run_cli("audit", str(digits_npz), "--quiet", "--json", str(tmp_path / ("a" * 300 + ".json"))),
            "over the file system's 255")
    refused(run_cli("audit", str(digits_npz), "--quiet", "--html", str(tmp_path) + "/b" * 2100 + "/r.html"),
            "over the file system's 4096 bytes")
    assert time.monotonic() - started < 30  # refused up front, not after the probes


def test_a_report_name_near_the_limit_is_written(tmp_path, digits_npz):
    out = tmp_path / ("r" * 250 + ".json")  # its temporary sibling's name was 14 bytes longer
    assert run_cli("audit", str(digits_npz), "--select", "input-fidelity", "--quiet", "--json", str(out)).returncode == 0
    assert json.loads(out.read_text())["checks"][0]["slug"] == "input-fidelity"


@pytest.mark.parametrize("value", ["[" * 3000 + "1" + "]" * 3000, "{a=" * 2000 + "1" + "}" * 2000])
def test_deeply_nested_toml_is_refused_with_file_and_line(tmp_path, value):
    config = write_config(tmp_path, f'[data]\nsource = "sklearn:digits"\nx = {value}\n')
    refused(run_cli("audit", str(config), "--quiet"), "dnncheck.toml:3:", "nested")


# -- odd images are records like any other -------------------------------------------------------------
def test_strips_and_one_pixel_images_are_records_and_keypoints_are_skipped(tmp_path):
    from dnncheck.data.scan import ScanSettings, scan_files

    rng = np.random.default_rng(0)
    paths = [tmp_path / "tall.png", tmp_path / "wide.png", tmp_path / "dot.png", tmp_path / "photo.png"]
    save_png(paths[0], rng.integers(0, 255, (20000, 20), dtype=np.uint8))  # cv2's resize asserted on it
    save_png(paths[1], rng.integers(0, 255, (20, 20000), dtype=np.uint8))
    save_png(paths[2], np.zeros((1, 1, 3), np.uint8))
    save_png(paths[3], np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((12, 12, 1))).astype(np.uint8))
    scan = scan_files(paths, ScanSettings(workers=1, cache=False))
    assert scan.records["ok"].all(), scan.reasons
    assert scan.records["kp_skipped"].tolist() == [True, True, False, False]
    assert scan.records["kp_count"][3, 0] > 0  # an ordinary photo still gets its keypoints


def test_a_feature_error_on_one_file_fails_that_file_only(tmp_path, monkeypatch):
    from dnncheck.data import records
    from dnncheck.data.scan import ScanSettings, scan_files

    paths = [tmp_path / f"{k}.png" for k in range(3)]
    for k, p in enumerate(paths):
        save_png(p, np.full((80, 80 + k), 40 * k, np.uint8))
    real = records.local_features

    def picky(image):
        if image.shape[1] == 81:
            raise RuntimeError("OpenCV refused this one")
        return real(image)

    monkeypatch.setattr(records, "local_features", picky)
    scan = scan_files(paths, ScanSettings(workers=1, cache=False))
    assert scan.records["ok"].tolist() == [True, False, True]
    assert "RuntimeError: OpenCV refused this one" in scan.reasons[1]


def test_a_folder_of_strips_audits_and_says_what_was_skipped(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "strips"
    for c in ("a", "b"):
        for i in range(6):
            save_png(root / c / f"{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    save_png(root / "a" / "tall.png", rng.integers(0, 255, (20000, 20), dtype=np.uint8))
    save_png(root / "b" / "dot.png", np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "r.json"
    proc = run_cli("audit", str(root), "--select", "input-fidelity", "--quiet", "--json", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(out.read_text())
    assert report["data"]["unreadable"] == 0
    assert any("too thin for keypoints" in n for n in report["data"]["notes"])
    assert report["checks"][0]["status"] in ("pass", "warn", "fail")


# -- the cache ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inside", ["cache", ".cache", "a/.dnncheck"])
def test_a_cache_inside_the_data_folder_is_refused_and_nothing_is_written(photos, monkeypatch, inside):
    before = tree_digest(photos)
    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(photos / inside))
    refused(run_cli("audit", str(photos), "--select", "input-fidelity", "--quiet"), "DNNCHECK_CACHE_DIR",
            "inside the data folder")
    assert tree_digest(photos) == before and not (photos / inside).exists()


def test_a_cache_inside_the_config_folder_is_refused(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    config = write_config(project, '[data]\nsource = "sklearn:digits"\n')
    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(project / ".cache"))
    refused(run_cli("audit", str(config), "--quiet"), "inside the config file's folder")


def test_the_folder_walk_never_lists_dnncheck_own_cache(photos, monkeypatch):
    from dnncheck.data.folder import _walk_files

    leftover = photos / "a" / "old-cache"  # made by an older dnncheck, before the refusal
    save_png(leftover / "thumb.png", np.zeros((8, 8), np.uint8))
    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(leftover))
    listed = _walk_files(photos / "a", photos)
    assert len(listed) == 12 and not any("old-cache" in p for p in listed)


def _audit_json(target: Path, out: Path, cache: Path, *extra: str, preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DNNCHECK_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "dnncheck", "audit", str(target), "--select", "input-fidelity",
                             "--quiet", "--json", str(out), *extra], env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def _verdicts(path: Path) -> dict:
    """A report's content without timings, environment and notes about the cache (what a fault changes)."""
    report = json.loads(path.read_text())
    for key in ("duration_s", "started_at", "environment", "command"):
        report.pop(key)
    for check in report["checks"]:
        check.pop("duration_s", None)
    report["data"]["notes"] = [n for n in report["data"]["notes"] if "cache" not in n and "scratch" not in n]
    return report


@pytest.fixture
def reference(photos, tmp_path):
    out = tmp_path / "reference.json"
    assert _audit_json(photos, out, tmp_path / "unused", "--no-cache").wait() == 0
    return _verdicts(out)


def test_three_audits_sharing_a_cache_at_once_give_identical_json(photos, tmp_path, reference):
    cache = tmp_path / "shared-cache"
    outs = [tmp_path / f"r{k}.json" for k in range(3)]
    procs = [_audit_json(photos, out, cache) for out in outs]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert all(_verdicts(out) == reference for out in outs)


def test_an_audit_killed_mid_pass_then_rerun_gives_a_clean_runs_json(photos, tmp_path, reference):
    cache = tmp_path / "killed-cache"
    proc = _audit_json(photos, tmp_path / "killed.json", cache, "--workers", "1")
    deadline = time.monotonic() + 60
    while not list(cache.glob("*.sqlite")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = tmp_path / "rerun.json"
    assert _audit_json(photos, rerun, cache).wait() == 0
    assert _verdicts(rerun) == reference


def test_cache_faults_degrade_to_no_cache_with_a_note(photos, tmp_path, reference):
    from dnncheck.data.cache import DB_NAME

    where_a_folder_should_be = tmp_path / "a-file"
    where_a_folder_should_be.write_text("not a folder")
    out = tmp_path / "file.json"
    assert _audit_json(photos, out, where_a_folder_should_be).wait() == 0
    assert _verdicts(out) == reference
    assert any("unavailable" in n for n in json.loads(out.read_text())["data"]["notes"])

    truncated = tmp_path / "truncated-cache"
    assert _audit_json(photos, tmp_path / "warm.json", truncated).wait() == 0
    db = truncated / DB_NAME
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    out = tmp_path / "truncated.json"
    assert _audit_json(photos, out, truncated).wait() == 0
    assert _verdicts(out) == reference
    assert any("damaged" in n and "rebuilt" in n for n in json.loads(out.read_text())["data"]["notes"])


def test_a_full_disk_degrades_to_memory_and_no_cache(photos, tmp_path, reference):
    import resource

    def small_files():  # every file this audit writes is cut at 64 KB: the disk is "full"
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    out = tmp_path / "full.json"
    proc = _audit_json(photos, out, tmp_path / "full-cache", preexec=small_files)
    assert proc.wait() == 0, proc.stderr.read()
    assert _verdicts(out) == reference
    notes = json.loads(out.read_text())["data"]["notes"]
    assert any("kept in memory" in n for n in notes), notes


# -- the Python API ---------------------------------------------------------------------------------------
class _HugeDataset:
    def __len__(self):
        return 10**12

    def __getitem__(self, i):
        return np.zeros((1, 8, 8), np.float32), 0


X = np.random.default_rng(0).random((40, 4)).astype(np.float32)
Y = np.arange(40) % 2


@pytest.mark.parametrize("target,words", [
    ({"train": (np.float32(1), np.zeros(3))}, "a single float32 value"),
    ({"train": (X, 3)}, "labels: a single int value"),
    ({"train": (np.array([object(), object()], dtype=object), np.zeros(2))}, "dtype object"),
    ({"train": ([[1, 2], [3]], [0, 1])}, "not an array"),
    ({"train": (X, Y[:-1])}, "40 inputs but 39 labels"),
    ({"train": (X, Y, Y)}, "got tuple of 3 items"),
    ({"train": X}, "got ndarray"),
    ({0: (X, Y)}, "split names must be text"),
    ({"train": _HugeDataset()}, "len() = 1,000,000,000,000 items"),
])
def test_the_python_api_refuses_bad_arguments_up_front(target, words):
    with pytest.raises(UserError) as err:
        dnncheck.audit(target, select=["input-fidelity"])
    assert words in str(err.value) and "\n" not in str(err.value)
    assert "_object_" not in str(err.value)  # in-memory data is "target", not an internal name


def test_label_ids_beyond_the_class_limit_are_refused_a_chunk_at_a_time(monkeypatch):
    from dnncheck.data import dataset

    monkeypatch.setattr(dataset, "DISTINCT_CHUNK", 1000)  # so that the test needs no million labels
    seen = []
    real = dataset._refuse_too_many
    monkeypatch.setattr(dataset, "_refuse_too_many", lambda n, where: (seen.append(n), real(n, where)))
    labels = np.arange(200_000, dtype=np.int64) * 7919 % 2**31
    with pytest.raises(UserError, match="more than the 50,000 classes"):
        dataset.class_labels(labels, "labels")
    assert len(seen) <= 52  # stopped once past the limit, not after sorting every label


# -- fuzz: generated configs and command lines ------------------------------------------------------------
ODD_VALUES = [-1, 0, 1, 2, 10**12, -(10**12), 0.5, -0.5, 1e300, float("nan"), float("inf"), "", "x", "../..",
              "/proc/self/environ", [], ["x"], [1, 2], {}, {"a": 1}, True, False, "sklearn:digits", "nll"]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _generated_config(rng, source: str) -> str:
    from dnncheck.config import SCHEMA

    tables = {"data": {"source": source}, "checks": {"select": ["input-fidelity"]}}
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            section = str(rng.choice(list(SCHEMA)))
            key = str(rng.choice(list(SCHEMA[section]) + ["bogus_key"]))
            tables.setdefault(section, {})[key] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
        else:
            check = CHECKS[int(rng.integers(len(CHECKS)))]
            name = str(rng.choice(list(check.thresholds) + ["bogus"]))
            tables.setdefault(f"checks.{check.slug}", {})[name] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    if tables["checks"].get("select") not in (["input-fidelity"],):  # keep each case cheap: data checks only
        tables["checks"]["select"] = ["input-fidelity"]
    return "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in table.items())
                     for name, table in tables.items()) + "\n"


ODD_FLAGS = [("--select", ["", ",", "nope", "DNC99", "input-fidelity,input-fidelity"]),
             ("--ignore", ["input-fidelity", "", "x"]),
             ("--budget", ["-1", "0", "nan", "inf", "1e309", "abc"]), ("--seed", ["-5", str(2**40), "1.5"]),
             ("--workers", ["-1", "0", "99999"]), ("--format", ["bogus", "github", "markdown"]),
             ("--fail-on", ["x", "never", "warn"]), ("--device", ["cuda:99", "tpu", "cpu"]),
             ("--engine", ["x"]), ("--model", ["nope", "os:getcwd", "missing.ts"]),
             ("--weights", ["missing.pt", "/dev/zero"]), ("--baseline", ["missing.json", "/dev/null"]),
             ("--json", ["OUTDIR", "DATA", "-", "x" * 300]), ("--html", ["OUTDIR", "/proc/self/status"])]


class _Hang(Exception):
    pass


def _entry_point(args, cwd) -> subprocess.CompletedProcess:
    """`dnncheck ARGS` through the console entry point (cli.main, which makes usage errors one line),
    in this process: its exit code and what it wrote."""
    import contextlib
    import io

    from dnncheck.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _bounded(args, cwd, seconds=20):
    """The command, with a hang turned into a failure after `seconds`."""
    def alarm(signum, frame):
        raise _Hang(" ".join(map(str, args)))

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return _entry_point(args, cwd)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _ends_cleanly(proc, case: str) -> int:
    assert proc.returncode in (0, 1, 2), f"{case}: exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, f"{case}:\n{proc.stderr}"
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dnncheck:"), f"{case}:\n{proc.stderr}"
    return proc.returncode


def test_fuzz_generated_configs_and_command_lines_end_in_0_1_or_2(tmp_path, digits_npz):
    rng = np.random.default_rng(29)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    protected = tree_digest(digits_npz.parent)
    codes = []
    for k in range(50):
        text = _generated_config(rng, str(digits_npz))
        config = write_config(tmp_path, text, f"fuzz{k}.toml")
        codes.append(_ends_cleanly(_bounded(["audit", str(config), "--quiet"], tmp_path), text))
        assert config.read_text() == text
    for k in range(30):
        args = ["audit", str(digits_npz), "--quiet"]
        for index in rng.choice(len(ODD_FLAGS), size=int(rng.integers(1, 4)), replace=False):
            flag, values = ODD_FLAGS[int(index)]
            value = str(rng.choice(values)).replace("OUTDIR", str(out_dir)).replace("DATA", str(digits_npz))
            args += [flag, value]
        if "--select" not in args:
            args += ["--select", "input-fidelity"]
        codes.append(_ends_cleanly(_bounded(args, tmp_path), " ".join(args)))
    assert tree_digest(digits_npz.parent) == protected
    assert codes.count(2) >= 20 and len(codes) - codes.count(2) >= 10, codes  # both refusals and audits ran


def test_a_read_only_cache_is_read_and_left_alone(photos, monkeypatch):
    """A database that refuses writes (simulated with SQLite's read-only mode: the suite may run as
    root, whom file permissions do not stop): cached files are read from it, new ones decoded, one note."""
    import sqlite3

    from dnncheck.data import cache
    from dnncheck.data.scan import ScanSettings, scan_files

    files = sorted(photos.rglob("*.png"))
    scan_files(files[:10], ScanSettings(workers=1))
    real = sqlite3.connect
    monkeypatch.setattr(cache.sqlite3, "connect",
                        lambda path, timeout: real(f"file:{path}?mode=ro", uri=True, timeout=timeout))
    scan = scan_files(files, ScanSettings(workers=1))
    fresh = scan_files(files, ScanSettings(workers=1, cache=False))
    assert scan.decoded == len(files) - 10 and scan.records["ok"].all()
    assert scan.records.tobytes() == fresh.records.tobytes()
    assert len(scan.notes) == 1 and "not written" in scan.notes[0]

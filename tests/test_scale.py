"""Real-size datasets: the streaming data pass, its records, the record cache, workers and Ray."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
from conftest import blob_images, save_png

from dnncheck.config import AuditConfig
from dnncheck.context import Context
from dnncheck.data.cache import DB_NAME, cache_dir
from dnncheck.data.files import ImageFiles
from dnncheck.data.records import RECORD_BYTES, array_records, channel_summary, image_record, value_stats
from dnncheck.data.scan import ScanSettings, scan_files, shutdown


@pytest.fixture
def photo_files(tmp_path):
    """`n` small colour PNGs (two classes of blobs) in one folder, listed in order."""
    def make(n=12, name="photos"):
        x, _ = blob_images(n, 2, size=20, channels=3, seed=3)
        paths = []
        for i, img in enumerate(x):
            path = tmp_path / name / f"{i:04d}.png"
            save_png(path, img)
            paths.append(path)
        return paths
    return make


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(folder))
    return folder


def test_a_record_is_a_few_kilobytes():
    assert RECORD_BYTES < 10240


def test_records_equal_whatever_the_chunking():
    x, _ = blob_images(40, 2, size=12, channels=3)
    whole = array_records(x, chunk=512)
    chunked = array_records(x, chunk=7)
    assert whole.tobytes() == chunked.tobytes()
    one = image_record(np.ascontiguousarray(x[5]))
    assert one.tobytes() == whole[5:6].tobytes()


def test_chunked_value_statistics_equal_in_memory_ones(monkeypatch):
    import dnncheck.data.records as records

    rng = np.random.default_rng(0)
    flat = rng.normal(size=(50, 300)).astype(np.float32)
    whole = value_stats(flat)
    monkeypatch.setattr(records, "CHUNK_ELEMENTS", 600)  # two rows per chunk
    chunked = value_stats(flat)
    for key in whole:
        assert np.array_equal(whole[key], chunked[key]), key


def test_channel_statistics_from_records_equal_the_tensor_ones():
    import torch

    x, _ = blob_images(30, 2, size=10, channels=3)
    summary = channel_summary(array_records(x), 3)
    t = torch.from_numpy(x).double()
    assert np.allclose(summary["mean"], t.mean(dim=(0, 1, 2)).numpy())
    assert np.allclose(summary["std"], t.std(dim=(0, 1, 2), unbiased=False).numpy())
    assert np.array_equal(summary["max"], t.amax(dim=(0, 1, 2)).numpy())


def test_files_give_the_same_records_as_their_arrays(photo_files, own_cache):
    paths = photo_files(6)
    scan = scan_files(paths, ScanSettings(cache=False))
    from PIL import Image

    arrays = [np.array(Image.open(p)) for p in paths]
    expected = array_records(arrays)
    for field in ("min", "max", "std", "ch_sum", "digest", "descriptors", "grey"):
        assert scan.records[field].tobytes() == expected[field].tobytes(), field
    assert not own_cache.exists()  # --no-cache writes nothing


def test_stored_records_keep_only_light_fields_in_memory_and_read_the_rest_back(photo_files, own_cache):
    """Records of image files: the heavy fields live in column files (data/store.py); gathering rows in
    any order, with repeats, from a view of a view, and reading in chunks give the written values."""
    from dnncheck.data.store import HEAVY_FIELDS, LIGHT_BYTES, StoredRecords

    paths = photo_files(20)
    scan = scan_files(paths, ScanSettings(workers=1))
    full = np.asarray(scan.records)
    from dnncheck.data.scan import record_file

    assert full.tobytes() == np.concatenate([record_file(str(p), 256, False)[0] for p in paths]).tobytes()
    records = scan.records
    assert isinstance(records, StoredRecords) and records.nbytes < 20 * (LIGHT_BYTES + 16) < full.nbytes / 20
    view = records[np.array([15, 3, 3, 9, 0, 12])][np.array([4, 1, 2, 0])]  # rows 0, 3, 3, 15
    for field in HEAVY_FIELDS:
        assert np.array_equal(view.gather(field, np.array([3, 0, 1])), full[field][[15, 0, 3]]), field
        assert np.array_equal(view[field], full[field][[0, 3, 3, 15]]), field
    starts, parts = zip(*records.chunks("grey", size=7))
    assert starts == (0, 7, 14) and np.array_equal(np.concatenate(parts), full["grey"])
    assert records[5]["digest"] == full[5]["digest"] and np.array_equal(records["min"], full["min"])
    assert not list((own_cache / "scratch").iterdir())  # the column files are unlinked as they are made


def test_compressed_index_finds_the_same_near_copies_as_the_exact_one(monkeypatch):
    """Above PQ_FROM indexed images the descriptors' index keeps product-quantised codes and rescores
    its candidates exactly: on 3,000 MNIST digits with 40 planted copies (shifted by a pixel, noised)
    it finds every copy, as the exact (flat) index does."""
    from conftest import shared_data

    from dnncheck import similarity

    data = np.load(shared_data("mnist5k.npz"))
    x = data["x"][:3000].copy()
    rng = np.random.default_rng(0)
    for k in range(40):
        copy = np.roll(x[k], 1, axis=1).astype(np.int16) + rng.integers(-6, 7, x[k].shape)
        x[2000 + k] = np.clip(copy, 0, 255).astype(np.uint8)
    records = array_records(x[..., None])
    starts = np.array([0, 2000, 3000])
    exact = similarity.block_candidates(similarity.Variants.of_records(records), starts, 0.9)
    monkeypatch.setattr(similarity, "PQ_FROM", 500)
    monkeypatch.setattr(similarity, "FLAT_INDEX_MAX", 500)
    compressed = []
    real = similarity._float_index

    def spy(*args):
        index, approximate = real(*args)
        compressed.append(approximate)
        return index, approximate

    monkeypatch.setattr(similarity, "_float_index", spy)
    found = similarity.block_candidates(similarity.Variants.of_records(records), starts, 0.9)
    assert any(compressed)
    planted = {(k, 2000 + k) for k in range(40)}
    assert planted <= set(zip(*exact)) and planted <= set(zip(*found))
    # the rest are look-alike digits near the bar (verification decides those): mostly the same ones
    assert len(set(zip(*found)) & set(zip(*exact))) >= 0.8 * len(exact[0])


def test_cache_hit_then_miss_on_change_then_corrupt_entry(photo_files, own_cache):
    paths = photo_files(8)
    settings = ScanSettings(workers=1)
    first = scan_files(paths, settings)
    assert first.decoded == 8 and (own_cache / DB_NAME).is_file()
    again = scan_files(paths, settings)
    assert again.decoded == 0 and again.records.tobytes() == first.records.tobytes()

    x, _ = blob_images(1, 2, size=20, channels=3, seed=99)
    save_png(paths[2], x[0])
    os.utime(paths[2], ns=(1, 1_000_000_000))  # another mtime, whatever the clock's resolution
    changed = scan_files(paths, settings)
    assert changed.decoded == 1
    assert changed.records[2]["digest"] != first.records[2]["digest"]

    with sqlite3.connect(own_cache / DB_NAME) as db:  # a torn write: the entry's bytes no longer check
        key, blob = db.execute("SELECT key, blob FROM records LIMIT 1").fetchone()
        db.execute("UPDATE records SET blob = ? WHERE key = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), key))
    healed = scan_files(paths, settings)
    assert healed.decoded == 1 and healed.records.tobytes() == changed.records.tobytes()
    assert scan_files(paths, settings).decoded == 0  # the bad entry was rewritten


def test_a_foreign_cache_file_is_replaced_not_trusted(photo_files, own_cache):
    paths = photo_files(3)
    own_cache.mkdir()
    (own_cache / DB_NAME).write_bytes(b"this is not a database" * 100)
    scan = scan_files(paths, ScanSettings(workers=1))
    assert scan.decoded == 3 and scan.records["ok"].all()
    assert len(scan.notes) == 1 and "was damaged" in scan.notes[0] and "rebuilt" in scan.notes[0]
    assert scan_files(paths, ScanSettings(workers=1)).decoded == 0


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNCHECK_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DNNCHECK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert cache_dir() == tmp_path / "xdg" / "dnncheck"


def test_records_do_not_depend_on_the_worker_count(photo_files):
    paths = photo_files(70)  # above INLINE_BELOW: two worker processes really run
    try:
        one = scan_files(paths, ScanSettings(workers=1, cache=False))
        two = scan_files(paths, ScanSettings(workers=2, cache=False))
    finally:
        shutdown()
    assert one.records.tobytes() == two.records.tobytes()


def test_image_files_decode_only_what_is_asked(photo_files):
    paths = photo_files(5)
    files = ImageFiles([str(p) for p in paths], 256, 3, workers=1)
    sub = files.take([4, 1])
    assert len(sub) == 2 and sub[0].shape == (20, 20, 3) and sub[0].dtype == np.uint8
    tensor = sub.resized((8, 8))
    assert tuple(tensor.shape) == (2, 3, 8, 8)
    grey = files.with_channels(1)[0]
    assert grey.shape == (20, 20, 1)


def test_checks_see_a_pixel_sample_but_records_cover_every_image(image_folder):
    root = image_folder(splits=("train", "val", "test"), per_class=15)  # 30 per split
    ctx = Context(AuditConfig(source=str(root), max_train_samples=10, cache=False))
    ctx.prepare()
    train = ctx.dataset.splits["train"]
    assert isinstance(train.x, ImageFiles) and len(train.records) == len(train) == 30
    assert len(ctx.view("train")) == 10 and tuple(ctx.inputs("train").shape)[0] == 10
    assert len(ctx.targets("train")) == 10
    assert any("stratified sample per split" in note and "train 10 of 30" in note for note in ctx.dataset.notes)


def test_a_file_changed_during_the_audit_is_a_clear_error(photo_files):
    from dnncheck.errors import UserError

    paths = photo_files(2)
    files = ImageFiles([str(p) for p in paths], 256, 3, workers=1)
    paths[0].write_bytes(b"no longer an image")
    with pytest.raises(UserError, match="changed during the audit"):
        files[0]


def _without_timings(doc):
    if isinstance(doc, dict):
        return {k: _without_timings(v) for k, v in doc.items()
                if not k.endswith("_seconds") and k not in ("duration_s", "started_at", "command", "environment")}
    if isinstance(doc, list):
        return [_without_timings(v) for v in doc]
    return doc


def test_ray_engine_on_a_two_node_cluster_gives_the_local_engines_json(image_folder, tmp_path):
    """A real multi-node run: a local Ray cluster of two nodes (ray.cluster_utils.Cluster, one CPU
    each), reached through --ray-address as an existing cluster is; the records are computed on both
    nodes and the audit's JSON equals the local engine's (timings and environment aside)."""
    ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'dnncheck[ray]'")
    from ray.cluster_utils import Cluster
    from typer.testing import CliRunner

    from dnncheck.cli import app

    root = image_folder(per_class=12, rgb=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    outputs = {}
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        for engine in ("local", "ray"):
            out = tmp_path / f"{engine}.json"
            extra = ["--ray-address", cluster.address] if engine == "ray" else []
            result = CliRunner().invoke(app, ["audit", str(root), "--engine", engine, "--no-cache", "--quiet", *extra,
                                              "--select", "input-fidelity,split-leakage,imbalance", "--json", str(out)])
            assert result.exit_code in (0, 1), result.output
            outputs[engine] = json.loads(out.read_text())
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    data_pass = outputs["ray"]["environment"]["data_pass"]
    assert data_pass["engine"] == "ray" and data_pass["ray_nodes"] == 2, data_pass
    assert _without_timings(outputs["ray"]) == _without_timings(outputs["local"])


def test_bad_engine_and_worker_settings_name_the_key(tmp_path):
    from typer.testing import CliRunner

    from dnncheck.cli import app

    config = tmp_path / "dnncheck.toml"
    config.write_text('[data]\nsource = "sklearn:digits"\n[probe]\nengine = "spark"\n')
    result = CliRunner().invoke(app, ["audit", str(config), "--quiet"])
    assert result.exit_code == 2 and "probe.engine" in result.output and "local, ray" in result.output
    config.write_text('[data]\nsource = "sklearn:digits"\nworkers = -1\n')
    result = CliRunner().invoke(app, ["audit", str(config), "--quiet"])
    assert result.exit_code == 2 and "data.workers" in result.output


def _exit_in_worker(chunk, parent_pid):
    """A chunk function whose worker processes die (as an out-of-memory kill would end them)."""
    if os.getpid() != parent_pid:
        os._exit(3)
    return [name.upper() for name in chunk]


def test_killed_worker_falls_back_to_this_process():
    from dnncheck.data import scan

    chunks = [[f"f{i}" for i in range(k, k + 32)] for k in range(0, 128, 32)]
    try:
        out = list(scan._run_chunks(_exit_in_worker, chunks, (os.getpid(),), 2))
    finally:
        scan.shutdown()
    assert out == [[name.upper() for name in chunk] for chunk in chunks]


def test_array_records_in_workers_equal_one_process(monkeypatch):
    from dnncheck.data import scan
    from dnncheck.data.records import array_records

    x = np.random.default_rng(3).integers(0, 256, (150, 12, 10, 3), dtype=np.uint8)
    monkeypatch.setattr(scan, "ARRAYS_IN_WORKERS_FROM", 100)
    monkeypatch.setattr(scan, "ARRAY_CHUNK", 32)
    try:
        parallel = scan.records_of_arrays(x, 2)
    finally:
        scan.shutdown()
    assert parallel.tobytes() == array_records(x).tobytes()


def test_large_image_views_are_kept_in_float16_and_small_ones_and_tables_not():
    import torch

    from dnncheck.probes.inputs import FLOAT16_SAFE, KEPT_FLOAT32_BYTES, kept

    side = 224
    n = KEPT_FLOAT32_BYTES // (4 * 3 * side * side) + 1  # one sample over the limit
    big = torch.linspace(-2.5, 2.5, n * 3 * side * side).reshape(n, 3, side, side)
    big[0, 0, 0, :2] = torch.tensor([float("nan"), float("inf")])
    small, table = big[:4].clone(), torch.randn(n * 100, 2000)
    compact = kept(big)
    assert compact.dtype == torch.float16 and compact.shape == big.shape
    assert float((compact.float() - big).nan_to_num(0, 0, 0).abs().max()) <= 2.5 * 2**-11  # 11 significant bits
    assert bool(compact[0, 0, 0, 0].isnan()) and bool(compact[0, 0, 0, 1].isinf())
    assert kept(small) is small and kept(table) is table
    big[1, 0, 0, 0] = FLOAT16_SAFE  # would lose precision near float16's limit of 65504: stays float32
    assert kept(big) is big


def test_an_audit_on_float16_views_reaches_the_verdicts_of_float32(monkeypatch, tmp_path):
    """Every check that reads the kept views (statistics, probes, forward passes, figures) gives the
    same statuses when they are float16, and the views are held at half the bytes."""
    import dnncheck
    import dnncheck.probes.inputs as inputs
    from dnncheck.context import Context

    x, y = blob_images(120, 3, size=24, channels=3, seed=5)
    data = {"train": (x[:90], y[:90]), "val": (x[90:], y[90:])}
    checks = "normalization,loss-sanity,separability,gradient-health,pixel-attack,label-noise"
    held = {}
    real_inputs = Context.inputs

    def inputs_seen(ctx, split):
        out = real_inputs(ctx, split)
        held[split] = out.dtype
        return out

    monkeypatch.setattr(Context, "inputs", inputs_seen)
    # UMAP's fit reads the same views as t-SNE's and costs most of the time: t-SNE alone stands for both
    from dnncheck.checks.separability import Separability

    monkeypatch.setitem(Separability.thresholds, "umap", (False, Separability.thresholds["umap"][1]))
    as_float32 = dnncheck.audit(data, model="smallcnn", select=checks)
    assert set(held.values()) == {inputs.torch.float32}
    monkeypatch.setattr(inputs, "KEPT_FLOAT32_BYTES", 0)
    held.clear()
    as_float16 = dnncheck.audit(data, model="smallcnn", select=checks)
    assert set(held.values()) == {inputs.torch.float16}
    statuses = {r.slug: r.status.value for r in as_float32.checks}
    assert statuses == {r.slug: r.status.value for r in as_float16.checks}
    assert "error" not in statuses.values() and len(statuses) == 6, statuses

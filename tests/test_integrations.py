"""Where users already are (issue 30): the GitHub Action's steps, the pre-commit hook, the Lightning
callback, hf: sources, the wheel, and the notebook view. Optional dependencies skip with a message."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_config

ROOT = Path(__file__).resolve().parents[1]


def _yaml(path: Path):
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the action and hook files (pip install pyyaml)")
    return yaml.safe_load(path.read_text())


def _run_script(script: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """One of the action's shell steps, as the runner runs it (bash, the step's env on top of the job's)."""
    full = {**os.environ, "PYTHON": sys.executable, **env}
    if "GITHUB_STEP_SUMMARY" in env:  # the suite turns job summaries off for its own audits; this one is the point
        full.pop("DNNCHECK_NO_STEP_SUMMARY", None)
    else:
        full.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", str(ROOT / "action" / script)], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _outputs(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# -- 1. the GitHub Action -------------------------------------------------------------------------------
def test_the_action_declares_its_inputs_outputs_and_runs_the_scripts_tested_here():
    action = _yaml(ROOT / "action.yml")
    assert set(action["inputs"]) >= {"target", "args", "python-version", "fail-on", "html", "baseline"}
    assert set(action["outputs"]) >= {"status", "report"}
    steps = action["runs"]["steps"]
    assert action["runs"]["using"] == "composite"
    runs = [s["run"] for s in steps if "run" in s]
    assert any("action/install.sh" in r for r in runs) and any("action/audit.sh" in r for r in runs)
    audit = next(s for s in steps if "audit.sh" in s.get("run", ""))
    # every input reaches the audit step (or the install step) under the name the script reads
    script = (ROOT / "action" / "audit.sh").read_text()
    for name in audit["env"]:
        assert name in script, name
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)
    # what GitHub requires of a composite action: a shell on every run step, a value on every output,
    # and only inputs that exist referenced as ${{ inputs.x }}
    assert all("shell" in s for s in steps if "run" in s)
    assert all("value" in o and "description" in o for o in action["outputs"].values())
    used = set(re.findall(r"inputs\.([\w-]+)", (ROOT / "action.yml").read_text()))
    assert used <= set(action["inputs"]), used - set(action["inputs"])


def _audit_step(tmp_path: Path, **inputs) -> tuple[subprocess.CompletedProcess, dict, Path]:
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    env = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(tmp_path),
           "GITHUB_ACTIONS": "true"}
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    proc = _run_script("audit.sh", env, tmp_path)
    return proc, _outputs(output), summary


def _imbalanced_digits(tmp_path: Path) -> Path:
    """Digits with one class kept at a fifth of the others: imbalance ratio 5, a warning (3 < 5 < 20)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:150 if c else 30] for c in range(10)])
    path = tmp_path / "imbalanced.npz"
    np.savez(path, x_train=(digits.images[keep] * 16).astype(np.uint8), y_train=digits.target[keep])
    return path


def test_the_actions_audit_step_gates_annotates_and_sets_its_outputs(tmp_path):
    html = tmp_path / "dnncheck-report.html"
    data = str(_imbalanced_digits(tmp_path))
    proc, outputs, summary = _audit_step(tmp_path, target=data, args="--select 'imbalance' --seed 0",
                                         fail_on="fail", html=str(html))
    assert proc.returncode == 0, proc.stderr
    assert outputs["status"] == "warn" and outputs["exit-code"] == "0" and outputs["report"] == str(html)
    assert json.loads(Path(outputs["json"]).read_text())["checks"][0]["slug"] == "imbalance"
    assert "::warning" in proc.stdout  # --format github: the warn is an annotation
    assert html.is_file() and "<html" in html.read_text()[:200].lower()
    assert "dnncheck" in summary.read_text()  # the job summary
    # fail-on warn: the same audit fails the job, and says so in its outputs
    proc, outputs, _ = _audit_step(tmp_path, target=data, args="--select imbalance --seed 0",
                                   fail_on="warn", html="")
    assert proc.returncode == 1 and outputs["exit-code"] == "1" and outputs["status"] == "warn"
    assert outputs["report"] == ""


def test_the_readme_example_workflow_uses_real_inputs_and_its_steps_run(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- example-workflow -->\s*```yaml\n(.*?)```", text, re.S)
    assert block, "README: the example workflow block is marked <!-- example-workflow -->"
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load(block.group(1))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    ours = next(s for s in steps if "dnncheck" in s.get("uses", "") and "upload" not in s.get("uses", ""))
    inputs = _yaml(ROOT / "action.yml")["inputs"]
    assert set(ours.get("with", {})) <= set(inputs), set(ours["with"]) - set(inputs)
    # the example's inputs, run through the action's audit step on a config like the example's
    given = {k: str(v) for k, v in ours["with"].items()}
    target = given.get("target", "")
    if target.endswith(".toml"):
        write_config(tmp_path, '[data]\nsource = "sklearn:digits"\n', target)
    args = given.get("args", "") + " --select imbalance --seed 0"  # one quick check stands for the whole audit
    proc, outputs, _ = _audit_step(tmp_path, target=target, args=args,
                                   fail_on=given.get("fail-on", inputs["fail-on"]["default"]),
                                   html=given.get("html", inputs["html"]["default"]),
                                   baseline="")
    assert proc.returncode in (0, 1), proc.stderr
    assert outputs["status"] in ("pass", "warn", "fail")


# -- 2. pre-commit ---------------------------------------------------------------------------------------
def test_the_pre_commit_hook_blocks_a_commit_whose_splits_leak(tmp_path):
    from sklearn.datasets import load_digits

    from dnncheck.cli import main

    hook = _yaml(ROOT / ".pre-commit-hooks.yaml")[0]
    assert hook["pass_filenames"] is False and re.search(hook["files"], "data/dnncheck.toml")
    argv = shlex.split(hook["entry"])
    assert argv[0] == "dnncheck"
    digits = load_digits()
    x, y = (digits.images * 16).astype(np.uint8), digits.target
    order = np.random.default_rng(0).permutation(len(y))
    train, val = order[:1200], order[1200:1500]
    clean = tmp_path / "clean"
    leaky = tmp_path / "leaky"
    for folder, val_index in ((clean, val), (leaky, np.r_[val[:200], train[:100]])):
        folder.mkdir()
        np.savez(folder / "data.npz", x_train=x[train], y_train=y[train], x_val=x[val_index], y_val=y[val_index])
        write_config(folder, '[data]\nsource = "data.npz"\n')
    codes = {}
    for folder in (clean, leaky):
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            main(argv[1:])
        except SystemExit as exc:
            codes[folder.name] = exc.code
        finally:
            os.chdir(cwd)
    assert codes == {"clean": 0, "leaky": 1}


# -- 3. Lightning ----------------------------------------------------------------------------------------
def _lightning_parts(counts):
    L = pytest.importorskip("lightning", reason="the Lightning callback needs lightning (pip install 'dnncheck[lightning]')")
    import torch
    from torch import nn

    class Digits(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            counts["steps"] += 1
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

    class DigitsData(L.LightningDataModule):
        def __init__(self, keep_per_class):
            super().__init__()
            self.keep_per_class = keep_per_class

        def setup(self, stage):
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
            y = torch.tensor(digits.target)
            keep = torch.cat([torch.nonzero(y == c)[:n, 0] for c, n in enumerate(self.keep_per_class)])
            x, y = x[keep], y[keep]
            order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
            cut = int(0.8 * len(y))
            self.train = torch.utils.data.TensorDataset(x[order[:cut]], y[order[:cut]])
            self.val = torch.utils.data.TensorDataset(x[order[cut:]], y[order[cut:]])

        def train_dataloader(self):
            return torch.utils.data.DataLoader(self.train, batch_size=64, shuffle=True)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(self.val, batch_size=64)

    return L, Digits, DigitsData


def test_the_lightning_callback_audits_before_fit_logs_and_lets_a_clean_run_train(tmp_path):
    counts = {"steps": 0}
    L, Digits, DigitsData = _lightning_parts(counts)
    from lightning.pytorch.loggers import CSVLogger

    from dnncheck.integrations.lightning import DnnCheckCallback

    callback = DnnCheckCallback(select=["imbalance"], seed=0, html=str(tmp_path / "r.html"))
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[callback],
                        logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(Digits(), datamodule=DigitsData([180] * 10))
    assert callback.result is not None and callback.result.exit_code == 0
    assert callback.result.data["splits"]["train"] > 1000 and "val" in callback.result.data["splits"]
    assert counts["steps"] == 2  # the audit did not stop a clean run
    training = callback.result.model["probe_plan"]["training"]  # the probes trained as configure_optimizers says
    assert training["optimizer"].startswith("SGD") and training["lr"] == 0.05 and training["batch_size"] == 64
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "dnncheck/status" in logged and "dnncheck/imbalance/status" in logged
    assert (tmp_path / "r.html").is_file()


def test_the_lightning_callback_stops_training_on_a_fail(tmp_path):
    counts = {"steps": 0}
    L, Digits, DigitsData = _lightning_parts(counts)
    from dnncheck.integrations.lightning import AuditFailed, DnnCheckCallback

    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[DnnCheckCallback(select=["imbalance"], seed=0)],
                        logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu")
    with pytest.raises(AuditFailed, match="imbalance fail"):  # 175 of class 0 against 5 of the others: ratio 35
        trainer.fit(Digits(), datamodule=DigitsData([175] + [5] * 9))
    assert counts["steps"] == 0


# -- 4. hf: sources ---------------------------------------------------------------------------------------
@pytest.fixture
def saved_hf(tmp_path):
    datasets = pytest.importorskip("datasets", reason="hf: sources need datasets (pip install 'dnncheck[hf]')")
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = [f"digit-{d}" for d in range(10)]
    features = datasets.Features({"img": datasets.Image(), "digit": datasets.ClassLabel(names=names)})

    def split(index):
        return datasets.Dataset.from_dict(
            {"img": [Image.fromarray((digits.images[i] * 16).astype(np.uint8)) for i in index],
             "digit": [int(digits.target[i]) for i in index]}, features=features)

    path = tmp_path / "digits_hf"
    datasets.DatasetDict({"train": split(range(0, 600)), "validation": split(range(600, 800))}).save_to_disk(str(path))
    return path


def test_an_hf_dataset_saved_to_disk_is_audited_with_its_class_names(saved_hf, tmp_path):
    import dnncheck

    result = dnncheck.audit(f"hf:{saved_hf}", select=["input-fidelity"])
    splits = result.data["splits"]
    assert splits["val"] == 200 and splits["train"] + splits["test"] == 600 and result.data["made_splits"] == ["test"]
    assert result.data["classes"][:2] == ["digit-0", "digit-1"] and result.data["source"] == f"hf:{saved_hf}"
    assert any("column 'img' as inputs, 'digit' as labels" in n for n in result.data["notes"])
    assert result.checks[0].status.value in ("pass", "warn")


def test_hf_sources_refuse_a_missing_column_or_folder(saved_hf, tmp_path):
    from test_hostile import refused, run_cli

    config = write_config(tmp_path, f'[data]\nsource = "hf:{saved_hf}"\nlabel_column = "nope"\n')
    refused(run_cli("audit", str(config), "--select", "input-fidelity", "--quiet"), "label_column = 'nope'", "digit")
    refused(run_cli("audit", f"hf:{tmp_path / 'missing'}", "--select", "input-fidelity", "--quiet"), "no such folder")
    config = write_config(tmp_path, '[data]\nsource = "sklearn:digits"\nimage_column = "img"\n', "digits.toml")
    refused(run_cli("audit", str(config), "--select", "input-fidelity", "--quiet"), "image_column", "not one")
    (tmp_path / "plain").mkdir()
    refused(run_cli("audit", f"hf:{tmp_path / 'plain'}", "--select", "input-fidelity", "--quiet"),
            "not a dataset saved with save_to_disk")


# -- 5. the wheel ------------------------------------------------------------------------------------------
def test_the_wheel_installs_with_the_actions_install_step_and_audits_without_the_source_tree(tmp_path):
    pytest.importorskip("build", reason="building the wheel needs build (pip install build)")
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    for name in files.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("dnncheck-*.whl"))
    import zipfile

    assert any(n.endswith("report/templates/report.html.j2") for n in zipfile.ZipFile(wheel).namelist())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = _run_script("install.sh", {"PYTHON": str(python), "DNNCHECK_PACKAGE": str(wheel), "DNNCHECK_TORCH_INDEX": "",
                                           "DNNCHECK_PIP_ARGS": "--no-deps --no-index --quiet"}, tmp_path)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import dnncheck; print(dnncheck.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True)
    assert str(venv) in where.stdout, where.stdout + where.stderr  # the wheel's copy, not the source tree's
    audit = subprocess.run([str(venv / "bin" / "dnncheck"), "audit", "sklearn:digits", "--select", "input-fidelity",
                            "--html", "r.html", "--quiet"], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stderr
    assert "input-fidelity" in (elsewhere / "r.html").read_text()


# -- 6. notebooks ------------------------------------------------------------------------------------------
def test_a_result_in_a_notebook_shows_its_summary_and_expands_to_the_full_report():
    import dnncheck

    result = dnncheck.audit("sklearn:digits", select=["input-fidelity", "imbalance"], seed=0)
    shown = result._repr_html_()
    assert shown.startswith("<div class='dnncheck'>") and "<details>" in shown and "srcdoc=" in shown
    assert shown.count("<tr>") == 1 + len(result.checks) and "imbalance" in shown
    import html

    section = html.unescape(result.checks[1]._repr_html_())  # the report's own section, in an iframe
    assert f'<section class="check" id="{result.checks[1].id}">' in section and result.checks[1].summary in section
    assert f'id="{result.checks[0].id}"' not in section  # that check alone


def test_a_palette_image_among_rgb_items_is_named_as_for_files():
    """Found auditing the ant/bee photos as an hf: dataset: the folder audit named the one palette
    image, the Dataset audit did not (items' Pillow modes were not recorded)."""
    from PIL import Image

    import dnncheck

    rng = np.random.default_rng(0)

    def split(n):
        return [(Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)), k % 2) for k in range(n)]

    items = split(40)
    items[7] = (items[7][0].convert("P"), 1)
    result = dnncheck.audit({"train": items, "val": split(10), "test": split(10)}, select=["input-fidelity"])
    finding = next(f for f in result.checks[0].findings if "mixed image modes" in f.message)
    assert "59 RGB, 1 P" in finding.message and finding.samples == ("train:7",)
    clean = dnncheck.audit({"train": split(40), "val": split(10), "test": split(10)}, select=["input-fidelity"])
    assert not any("mixed image modes" in f.message for f in clean.checks[0].findings)

"""The user's training setup, faithfully (issue "The user's training setup"): their optimizer and
schedule, the input size their model and tensors take, and messages that blame the right thing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import dnncheck
from dnncheck.checks.learning_rate import LearningRate, LearningRateMeasurement
from dnncheck.cli import app
from dnncheck.errors import UserError
from dnncheck.models.build import ModelInputs, build_model
from dnncheck.probes.optim import build_optimizer, build_scheduler, describe_schedule, validate
from dnncheck.probes.train import ProbeSettings, train_probe
from dnncheck.results import Status
from tests.conftest import write_config

runner = CliRunner()
IMG = ModelInputs(10, 1, (8, 8))


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    return (x[:640], y[:640]), (x[640:800], y[640:800])


# -- 1. the user's optimizer and schedule --------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("adadelta", torch.optim.Adadelta), ("RMSprop", torch.optim.RMSprop),
                                       ("n_adam", torch.optim.NAdam), ("sgd", torch.optim.SGD)])
def test_any_torch_optim_optimizer_is_built_by_name(name, cls):
    opt = build_optimizer(name, [nn.Parameter(torch.zeros(2))], 0.5, 0.0, 0.9, {})
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.5


def test_optimizer_arguments_reach_the_optimizer_and_sgd_keeps_its_momentum_key():
    sgd = build_optimizer("sgd", [nn.Parameter(torch.zeros(2))], 0.1, 0.0, 0.8, {"nesterov": True})
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"] is True
    ada = build_optimizer("adadelta", [nn.Parameter(torch.zeros(2))], 1.0, 0.0, 0.9, {"rho": 0.8})
    assert ada.param_groups[0]["rho"] == 0.8 and "momentum" not in ada.param_groups[0]


@pytest.mark.parametrize("spec, args, key", [("adadeltaa", {}, "[train] optimizer = 'adadeltaa'"),
                                             ("lbfgs", {}, "needs a closure"),
                                             ("adam", {"rhoo": 1}, "[train.optimizer_args]")])
def test_a_bad_optimizer_or_argument_is_a_user_error_naming_the_key(spec, args, key):
    with pytest.raises(UserError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(spec, args, None, {}, 1e-3, 0.0, 0.9)


def test_a_bad_scheduler_is_a_user_error_naming_the_key():
    with pytest.raises(UserError, match=r"\[train\] scheduler = 'steplrr'"):
        validate("adam", {}, "steplrr", {}, 1e-3, 0.0, 0.9)
    with pytest.raises(UserError, match=r"\[train.scheduler_args\]"):
        validate("adam", {}, "StepLR", {}, 1e-3, 0.0, 0.9)  # StepLR needs step_size


def test_step_lr_steps_once_per_probe_epoch_as_the_users_loop_does():
    train, val = _digits()
    settings = ProbeSettings("adadelta", 1.0, 64, 3, 0, scheduler="StepLR",
                             scheduler_args=(("step_size", 1), ("gamma", 0.5)))
    torch.manual_seed(0)
    model = build_model("mlp", IMG)
    run = train_probe("t", model, nn.functional.cross_entropy, train, val, "classification", settings)
    assert run.stopped_by == "plan" and run.epochs[-1]["train_loss"] < run.initial_loss
    # the optimizer is internal to the run: rebuild the schedule and read its learning rates
    opt = build_optimizer("adadelta", [nn.Parameter(torch.zeros(1))], 1.0, 0.0, 0.9, {})
    schedule, per_step = build_scheduler("StepLR", opt, {"step_size": 1, "gamma": 0.5}, 3, 10)
    assert per_step is False
    for _ in range(3):
        opt.step()  # as a training loop does before stepping its schedule
        schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.125)


def test_a_schedule_changes_the_probe_and_one_cycle_spans_the_probe():
    train, val = _digits()
    losses = {}
    for schedule in (None, "OneCycleLR"):
        torch.manual_seed(0)
        settings = ProbeSettings("sgd", 0.05, 64, 2, 0, scheduler=schedule)
        losses[schedule] = train_probe("t", build_model("mlp", IMG), nn.functional.cross_entropy, train, val,
                                       "classification", settings).step_loss
    assert losses[None][0] == losses["OneCycleLR"][0] and losses[None][-1] != losses["OneCycleLR"][-1]
    opt = build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], 0.05, 0.0, 0.9, {})
    schedule, per_step = build_scheduler("one_cycle_lr", opt, {"epochs": 99, "steps_per_epoch": 7}, 2, 10)
    assert per_step and schedule.total_steps == 20  # the user's length replaced by the probe's
    assert "compressed onto each probe's length" in describe_schedule("OneCycleLR", {})


MNIST_EXAMPLE = '''
import torch
from torch import nn
import torch.nn.functional as F

class Net(nn.Module):  # the shape of pytorch/examples' MNIST net, for 8x8 digits
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 10)
        self.dropout = nn.Dropout(0.25)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.dropout(torch.flatten(x, 1))
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)

def make(**kw):
    return Net()
'''


def test_the_mnist_example_with_adadelta_and_steplr_audits_with_its_optimizer_named(tmp_path, user_module):
    module = user_module(MNIST_EXAMPLE)
    cfg = write_config(tmp_path, f'''
[data]
source = "sklearn:digits"
[model]
factory = "{module}:make"
loss = "nll"
[train]
optimizer = "adadelta"
lr = 1.0
scheduler = "StepLR"
[train.scheduler_args]
step_size = 1
gamma = 0.7
[probe]
epochs = 3
[checks]
select = ["loss-sanity", "learning-rate"]
''')
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["audit", str(cfg), "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(out.read_text())
    training = doc["model"]["probe_plan"]["training"]
    assert training["optimizer"] == "Adadelta" and training["lr"] == 1.0
    assert training["schedule"].startswith("StepLR(step_size=1, gamma=0.7), stepped once per probe epoch")
    assert "probes train with Adadelta at lr 1" in result.output
    statuses = {c["slug"]: c["status"] for c in doc["checks"]}
    assert statuses == {"loss-sanity": "pass", "learning-rate": "pass"}, [c["summary"] for c in doc["checks"]]
    assert "for Adadelta" in next(c for c in doc["checks"] if c["slug"] == "learning-rate")["summary"]


def test_an_unknown_optimizer_in_a_config_exits_2_naming_the_key(tmp_path):
    cfg = write_config(tmp_path, '[data]\nsource = "sklearn:digits"\n[train]\noptimizer = "adagradd"\n')
    result = runner.invoke(app, ["audit", str(cfg), "--quiet"])
    assert result.exit_code == 2 and "[train] optimizer = 'adagradd'" in result.output
    assert "Traceback" not in result.output


# -- 2. a model that cannot take the input size ---------------------------------------------------
LENET = '''
import torch
from torch import nn

class LeNet(nn.Module):  # a CIFAR LeNet: a fixed 16*5*5 flatten, so 32x32 inputs only
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(16 * 5 * 5, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))

def make(num_classes, **kw):
    return LeNet(num_classes)
'''


def test_a_model_that_cannot_take_the_input_size_exits_2_with_the_size_it_accepts(tmp_path, user_module, npz_file):
    module = user_module(LENET)
    rng = np.random.default_rng(0)
    path = npz_file(x_train=rng.integers(0, 255, (60, 48, 48, 3), dtype=np.uint8), y_train=np.arange(60) % 2)
    result = runner.invoke(app, ["audit", str(path), "--model", f"{module}:make", "--select", "loss-sanity",
                                 "--quiet"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "(2, 3, 48, 48)" in text and "the model runs on inputs of 32x32 to 35x35" in text
    assert "[data] image_size = [32, 32]" in text and "Traceback" not in text


# -- 3. tensors the user prepared keep their size ----------------------------------------------------
class _Prepared(torch.utils.data.Dataset):
    """3x144x144 float tensors, as a user's transform (ToTensor + Normalize) returns them."""

    def __init__(self, n, offset=0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + i)
        return torch.randn(3, 144, 144, generator=g), (self.offset + i) % 2


def test_tensors_from_a_dataset_are_audited_at_their_own_size():
    result = dnncheck.audit({"train": _Prepared(40), "val": _Prepared(20, 40)}, model="mlp",
                            select=["imbalance"], budget=60)
    assert result.data["image_size"] == [144, 144]
    assert result.data["image_size_from"].startswith("the size every input array of the source shares")
    assert any(n.startswith("model input 144x144") for n in result.data["notes"])
    assert not any("vary in size" in n for n in result.data["notes"])


def test_image_files_above_128px_still_default_to_64(tmp_path):
    # decoded photos are not the user's prepared tensors: large ones are audited at 64x64, as before
    from dnncheck.config import AuditConfig
    from dnncheck.data import load_dataset
    from tests.conftest import save_png

    rng = np.random.default_rng(0)
    for i in range(12):
        save_png(tmp_path / "photos" / ("a" if i % 2 else "b") / f"{i}.png",
                 rng.integers(0, 255, (144, 144, 3), dtype=np.uint8))
    ds = load_dataset(AuditConfig(source=str(tmp_path / "photos")))
    assert ds.image_size == (64, 64) and ds.image_size_from.startswith("the default")


# -- 4. learning-rate never contradicts the one-batch and fit probes ----------------------------------
def _flat_range(**kw):
    lrs = tuple(float(v) for v in np.geomspace(1e-7, 10, 30))
    flat = tuple(0.69 - 0.0001 * i for i in range(30))  # the smoothed loss never falls below 90% of its start
    return LearningRate.judge(LearningRateMeasurement(1e-3, lrs, flat, flat, "end of range", **kw),
                              LearningRate.Thresholds())


def test_no_learning_rate_learns_is_information_when_the_one_batch_test_fits():
    fits = _flat_range(one_batch_losses=(0.72, 0.3, 0.03))
    assert fits.status is Status.PASS and "one-batch test's loss 0.72 -> 0.03" in fits.findings[0].message
    alone = _flat_range(one_batch_losses=(0.72, 0.70, 0.69))
    assert alone.status is Status.WARN and "the one-batch test agrees" in alone.findings[0].message


def test_no_remedy_range_is_printed_when_the_range_is_empty():
    v = _flat_range()
    assert v.status is Status.WARN and "[0, 0]" not in v.remedy and "inside" not in v.remedy
    assert "one-batch test" in v.remedy


# -- 5. messages that blame the right thing -------------------------------------------------------
def test_a_cut_short_audit_blames_no_model_and_suggests_one_budget(tmp_path, monkeypatch):
    from dnncheck.probes import cost

    monkeypatch.setitem(cost.SPEEDS, "cpu", cost.DeviceSpeed("CPU", 1e18, 1e-18, 1e-9))  # plan everything
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["audit", "sklearn:digits", "--model", "mlp", "--budget", "0.001", "--quiet",
                                 "--select", "normalization,loss-sanity,learning-rate,overfit,training-curves",
                                 "--json", str(out)])
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(out.read_text())
    text = json.dumps(doc["checks"])
    assert "could not train" not in text and "return logits" not in text and "not finished" in text
    normalization = next(c for c in doc["checks"] if c["slug"] == "normalization")
    assert "Scale" not in normalization["remedy"]  # digits z-scored as configured: nothing to fix in the inputs
    assert all(c["remedy"].startswith("Let the probes finish") for c in doc["checks"] if c["status"] == "warn")
    notes = [n for n in doc["data"]["notes"] if n.startswith("probe plan: ")]
    assert len(notes) == 1 and "To complete every probe run with --budget " in notes[0]
    assert not re.search(r"--budget \d", text)  # no per-check budget suggestions: one, in the notes


# -- 9. the API takes the training keys -------------------------------------------------------------
def test_audit_takes_training_keyword_arguments_validated_like_the_config():
    result = dnncheck.audit("sklearn:digits", model="mlp", select=["learning-rate"], optimizer="rmsprop", lr=1e-3,
                            batch_size=32, loss="cross_entropy")
    assert result.model["probe_plan"]["training"] == {"optimizer": "RMSprop", "lr": 1e-3, "batch_size": 32,
                                                      "schedule": None}
    with pytest.raises(UserError, match="train.lr"):
        dnncheck.audit("sklearn:digits", model="mlp", select=["learning-rate"], lr=-1)
    with pytest.raises(UserError, match="optimizer"):
        dnncheck.audit("sklearn:digits", model="mlp", select=["learning-rate"], optimizer="nope")


# -- 6. the time estimate is checked against the measured time, in the JSON -------------------------
def test_the_json_says_how_far_the_estimate_was_from_the_measured_time(tmp_path):
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["audit", "sklearn:digits", "--model", "mlp", "--select", "loss-sanity,overfit",
                                 "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())["model"]["probe_plan"]
    ratios = {p["name"]: p["spent_over_estimated_seconds"] for p in plan["probes"]}
    assert ratios["fit"] > 0 and plan["spent_over_estimated_seconds"] > 0
    # the one-batch test stops at its target: its ratio is over the steps it did, not the 200 planned
    batch = next(p for p in plan["probes"] if p["name"] == "overfit-batch")
    assert batch["steps_done"] < batch["steps"]
    # the JSON rounds seconds to 0.01 (a one-batch test on digits spends a few hundredths), so the
    # ratio is recomputed within those roundings (5% of the value alone failed at 0.03 s spent); over
    # all 200 planned steps it would be about 7x lower, outside them
    done = batch["steps_done"] / batch["steps"]
    low = (batch["spent_seconds"] - 0.005) / ((batch["estimated_seconds"] + 0.005) * done)
    high = (batch["spent_seconds"] + 0.005) / (max(batch["estimated_seconds"] - 0.005, 1e-9) * done)
    assert low - 0.001 <= ratios["overfit-batch"] <= high + 0.001, (ratios["overfit-batch"], batch)


# -- 7. BLAS threads inside checks ------------------------------------------------------------------
def test_checks_run_with_the_blas_thread_count_set_explicitly(monkeypatch):
    from threadpoolctl import threadpool_info

    from dnncheck.checks.imbalance import Imbalance
    from dnncheck.runner import blas_threads
    from tests.helpers import run_one

    seen = []
    measure = Imbalance.measure

    def spying(self, ctx):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return measure(self, ctx)

    monkeypatch.setattr(Imbalance, "measure", spying)
    monkeypatch.setattr("dnncheck.runner.blas_threads", lambda: 1)
    run_one(Imbalance(), source="sklearn:digits", model="mlp")
    assert seen and set(seen) == {1}
    assert 1 <= blas_threads() <= 4

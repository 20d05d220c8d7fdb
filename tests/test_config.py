"""Config: TOML, [tool.dnncheck], flags on top, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_config
from dnncheck.config import build_config, load_config_file
from dnncheck.errors import UserError
from dnncheck.runner import select_checks


def test_toml_values_and_relative_paths(tmp_path):
    path = write_config(tmp_path, """
[data]
source = "data/cells"
image_size = [32, 48]
normalize = {mean = [0.5], std = [0.25]}
[model]
factory = "mlp"
loss = "nll"
[train]
optimizer = "sgd"
lr = 1
[probe]
budget_seconds = 30
seed = 7
[checks]
ignore = ["DNC9"]
fail_on = "warn"
[checks.imbalance]
ratio_warn = 5
""")
    cfg = load_config_file(path)
    assert cfg.source == "data/cells" and cfg.resolve(cfg.source) == tmp_path / "data" / "cells"
    assert cfg.image_size == (32, 48) and cfg.normalize == {"mean": [0.5], "std": [0.25]}
    assert cfg.model == "mlp" and cfg.loss == "nll" and cfg.optimizer == "sgd"
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.budget_seconds == 30 and cfg.seed == 7 and cfg.fail_on == "warn"
    assert cfg.thresholds == {"imbalance": {"ratio_warn": 5}}


def test_pyproject_table_is_found_without_target(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.dnncheck.data]\nsource = "sklearn:digits"\n')
    cfg = build_config(None, {}, cwd=tmp_path)
    assert cfg.source == "sklearn:digits"


def test_dnncheck_toml_is_the_fallback(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    write_config(tmp_path, '[data]\nsource = "sklearn:digits"\n')
    assert build_config(None, {}, cwd=tmp_path).source == "sklearn:digits"


def test_no_target_and_no_config_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no TARGET given"):
        build_config(None, {}, cwd=tmp_path)


def test_flags_override_the_file(tmp_path):
    path = write_config(tmp_path, '[data]\nsource = "sklearn:digits"\n[probe]\nseed = 1\n')
    cfg = build_config(str(path), {"--seed": ("probe", "seed", 5), "--device": ("probe", "device", None)})
    assert cfg.seed == 5 and cfg.device == "auto"


@pytest.mark.parametrize("text, message", [
    ("[data]\nsoruce = 'x'\n", 'unknown key data.soruce (did you mean "source"?)'),
    ("[dta]\nsource = 'x'\n", 'unknown section [dta] (did you mean "data"?)'),
    ("[train]\nlr = 'fast'\n", "train.lr = 'fast' is not valid; expected a positive number"),
    ("[train]\nbatch_size = 3.5\n", "expected an integer between 1 and 65536"),
    ("[data]\nimage_size = [64]\n", "expected two integers [H, W] between 1 and 4096"),
    ("[data]\nnormalize = 'zcore'\n", "expected one of auto, none, zscore, minmax"),
    ("[checks]\nfail_on = 'error'\n", "expected one of fail, warn, never"),
    ("[probe]\ndevice = 'tpu'\n", "expected auto, cpu, cuda or cuda:N"),
    ("[data\nsource = 1", "invalid TOML"),
    ("[model]\nloss = 'hinge'\n", "expected one of cross_entropy"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(UserError) as info:
        build_config(str(path), {})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_source_is_an_error(tmp_path):
    path = write_config(tmp_path, "[train]\nlr = 0.1\n")
    with pytest.raises(UserError, match="data.source is not set"):
        build_config(str(path), {})


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        build_config(str(tmp_path / "nope.toml"), {})


def test_bad_flag_value_names_the_flag():
    with pytest.raises(UserError, match="--budget: probe.budget_seconds = -1"):
        build_config("sklearn:digits", {"--budget": ("probe", "budget_seconds", -1)})


@pytest.mark.parametrize("text, message", [
    ("[checks.imbalanse]\nratio_warn = 2\n", 'unknown check \'imbalanse\' (did you mean "imbalance"?)'),
    ("[checks.imbalance]\nratio_wran = 2\n", 'unknown threshold (did you mean "ratio_warn"?)'),
    ("[checks.imbalance]\nratio_warn = 'high'\n", "expected float"),
])
def test_check_threshold_errors(tmp_path, text, message):
    path = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n" + text)
    with pytest.raises(UserError) as info:
        select_checks(build_config(str(path), {}))
    assert message in str(info.value)


def test_thresholds_reach_the_check(tmp_path):
    path = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n[checks.imbalance]\nratio_warn = 2\n")
    checks = {c.slug: c for c in select_checks(build_config(str(path), {}))}
    assert checks["imbalance"].t.ratio_warn == 2.0


def test_checks_may_be_ignored_by_id_or_slug(tmp_path):
    path = write_config(tmp_path, "[data]\nsource = 'sklearn:digits'\n[checks]\nignore = ['external-validation', 'DNC9']\n")
    slugs = [c.slug for c in select_checks(build_config(str(path), {}))]
    assert "imbalance" not in slugs and slugs[:2] == ["input-fidelity", "normalization"]


def test_starter_config_is_valid(tmp_path):
    from dnncheck.config import STARTER_CONFIG

    path = write_config(tmp_path, STARTER_CONFIG.format(name="dnncheck.toml"))
    cfg = build_config(str(path), {})
    assert cfg.source == "sklearn:digits" and cfg.model == "auto"
    assert Path(cfg.base_dir) == tmp_path


def test_every_example_key_of_the_starter_config_is_valid(tmp_path):
    """`dnncheck init` suggests keys in comments: uncommented, each must be accepted as written
    (a suggested key that does not exist, like max_ratio_warn once, sends users to an error)."""
    import re

    from dnncheck.config import STARTER_CONFIG

    text = STARTER_CONFIG.format(name="dnncheck.toml")
    examples = re.findall(r"^# (\[[\w.-]+\]|\w+ = .+?)(?:\s+#.*)?$", text, flags=re.MULTILINE)
    assert len(examples) >= 10  # the pattern still finds the suggestions
    uncommented = re.sub(r"^# (\[[\w.-]+\]|\w+ = .+?)(\s+#.*)?$", r"\1\2", text, flags=re.MULTILINE)
    cfg = build_config(str(write_config(tmp_path, uncommented)), {})
    assert cfg.image_size == (64, 64) and cfg.epochs == 10 and cfg.metric == "balanced_accuracy"
    checks = {c.slug: c for c in select_checks(cfg)}
    assert checks["imbalance"].t.ratio_warn == 3.0

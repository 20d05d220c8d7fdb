"""Context: the artefacts checks share, each computed once on first use and cached.

`prepare()` does what can refuse to start an audit (decode the data, build the model, load the
weights) so that its UserErrors surface as exit 2 before any check runs. Everything else is lazy:
a check that never asks for the probe run never pays for it.
"""

from __future__ import annotations

import platform
from functools import cached_property

import numpy as np

from dnncheck.data.sampling import subsample_index
from dnncheck.errors import ProbeCutShort, ProbeUnavailable, UserError
from dnncheck.progress import NullProgress

MAX_PROBE_VAL = 2000  # validation/test samples whose pixels are loaded and evaluated each probe epoch


class Context:
    def __init__(self, cfg, progress=None):
        self.cfg = cfg
        self.progress = progress or NullProgress()
        self._probe_error: str | None = None

    # -- the settings checks read (checks never reach into cfg) -----------------------------------
    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def max_train_samples(self) -> int:
        return self.cfg.max_train_samples

    @property
    def user_lr(self) -> float:
        """The learning rate the user trains with ([train] lr)."""
        return self.cfg.lr

    @property
    def metric(self) -> str:
        return self.cfg.metric

    @property
    def normalize_setting(self):
        """data.normalize as configured: a mode name or {mean, std}."""
        return self.cfg.normalize

    @property
    def has_weights(self) -> bool:
        """Whether the user gave trained weights (--weights)."""
        return bool(self.cfg.weights)

    # -- set-up that may refuse to start (exit 2) -------------------------------------------
    def prepare(self) -> None:
        from dnncheck.probes.train import request_determinism

        request_determinism()  # before anything touches CUDA
        self.dataset  # noqa: B018 - read the data now
        self._note_sampling()
        self.device  # noqa: B018
        model = self.user_model()  # build and load weights now so errors surface before checks
        self.model_info = {"spec": self.model_spec, **self._param_counts(model)}
        self.external  # noqa: B018 - a bad external set is bad input too
        self.custom_loss  # noqa: B018 - a loss spec that cannot be imported
        self._check_normalize_setting()

    def _check_normalize_setting(self) -> None:
        from dnncheck.probes.inputs import check_normalize_width

        ds = self.dataset
        check_normalize_width(self.cfg.normalize, ds.channels if ds.is_image else len(ds.feature_names), ds.is_image)

    def _note_sampling(self) -> None:
        sampled = [f"{name} {note}" for name in self.dataset.splits if (note := self.sampled_note(name))]
        if sampled:
            self.dataset.notes.append(f"checks that need pixels or a model (probes, projections, figures) use a stratified "
                                      f"sample per split ({', '.join(sampled)}; train: probe.max_train_samples, others: "
                                      f"{MAX_PROBE_VAL}); counts, "
                                      "statistics, duplicates and leakage cover every sample")

    @cached_property
    def external(self):
        """The external validation set as a SplitData, or None."""
        from dnncheck.data import load_external

        return load_external(self.cfg, self.dataset, self.progress)

    def external_inputs(self):
        """The external set's tensor (at most max_train_samples of it), resized and normalised like train."""
        external = self.external
        index = subsample_index(external.y, self.cfg.max_train_samples, self.cfg.seed, self.dataset.task == "classification")
        return self.normalizer(self._raw_tensor(external.take(index).x if len(index) < len(external) else external.x))

    def external_targets(self) -> np.ndarray:
        """The labels lining up with external_inputs()."""
        external = self.external
        index = subsample_index(external.y, self.cfg.max_train_samples, self.cfg.seed, self.dataset.task == "classification")
        return external.y[index]

    @cached_property
    def dataset(self):
        from dnncheck.data import load_dataset

        self.progress.stage("loading data")
        return load_dataset(self.cfg, self.progress)

    @cached_property
    def device(self) -> str:
        import torch

        wanted = self.cfg.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError(f"device {wanted!r}: no CUDA device is available here; use --device cpu or auto")
            index = int(wanted.split(":")[1]) if ":" in wanted else 0
            if index >= torch.cuda.device_count():
                raise UserError(f"device {wanted!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return wanted

    @property
    def model_spec(self) -> str:
        from dnncheck.models.build import resolve_spec

        return resolve_spec(self.cfg.model, self.dataset.modality)

    @cached_property
    def model_inputs(self):
        from dnncheck.models.build import ModelInputs

        ds = self.dataset
        outputs = ds.num_classes if ds.task == "classification" else 1
        if ds.is_image:
            return ModelInputs(outputs, ds.channels, tuple(ds.image_size))
        return ModelInputs(outputs, len(ds.feature_names), None)

    def _built_model(self, seed: int | None = None):
        import torch

        from dnncheck.models.build import build_model

        torch.manual_seed(self.cfg.seed if seed is None else seed)
        return build_model(self.model_spec, self.model_inputs, self.cfg.base_dir)

    def fresh_model(self, seed: int | None = None):
        """A newly initialised model, seeded so that repeated builds are identical."""
        return self._one_output(self._built_model(seed))

    def user_model(self):
        """The model as the user has it: fresh, with --weights loaded when given."""
        from dnncheck.models.build import load_weights

        model = self._built_model()
        if self.cfg.weights:
            load_weights(model, self.cfg.resolve(self.cfg.weights))
        return self._one_output(model)

    def _one_output(self, model):
        """Models whose forward returns a tuple, list or mapping are audited on their logits (the
        first tensor, or `logits`): decided once, on two training inputs, and said in the notes."""
        import torch

        from dnncheck.models.build import single_output

        if "_wraps_outputs" not in self.__dict__:
            self._wraps_outputs = False
            was_training = model.training
            try:
                with torch.no_grad():
                    out = model.eval()(self._probe_batch())
            except Exception:  # a forward that fails is diagnosed by the checks
                out = None
            model.train(was_training)
            if out is not None and not isinstance(out, torch.Tensor):
                self._wraps_outputs = True
                size = f" of {len(out)}" if hasattr(out, "__len__") else ""
                self.dataset.notes.append(f"the model returns a {type(out).__name__}{size}; dnncheck audits its "
                                          "logits (a 'logits' entry, else the first tensor): if your loss uses "
                                          "another element, wrap the model to return it")
        return single_output(model) if self._wraps_outputs else model

    def _probe_batch(self):
        """Two training inputs to see what the model's forward returns (its type, not its values):
        normalised when the normaliser is already fitted, else in [0, 1] (integer images) or as
        stored, so that building the model never fits the normaliser on a whole view."""
        if "normalizer" in self.__dict__:
            return self.inputs_of("train", range(2))
        from dnncheck.probes.inputs import integer_scale

        raw = self.raw_inputs_of("train", range(2))
        scale = integer_scale(self.dataset.splits["train"].x) if self.dataset.is_image else None
        return raw / scale if scale else raw

    @staticmethod
    def _param_counts(model) -> dict:
        from dnncheck.models.introspect import parameter_count

        return parameter_count(model)

    # -- the samples whose pixels are loaded ----------------------------------------------------
    @cached_property
    def _views(self) -> dict:
        return {}

    def sample_index(self, split: str) -> np.ndarray:
        """Indices into `split` of the samples whose pixels checks load: the whole split up to
        max_train_samples for train (the probes' sample), MAX_PROBE_VAL for the others (what a probe
        epoch evaluates), else a stratified subsample of that many. Data-wide measurements (counts,
        records, duplicates) cover every sample regardless."""
        part = self.dataset.splits[split]
        cap = self.cfg.max_train_samples if split == "train" else min(self.cfg.max_train_samples, MAX_PROBE_VAL)
        return subsample_index(part.y, cap, self.cfg.seed, self.dataset.task == "classification")

    def view(self, split: str):
        """The split restricted to sample_index(split): the split itself when that is all of it.
        Its ids and labels line up with inputs(split) and targets(split)."""
        if split not in self._views:
            part = self.dataset.splits[split]
            index = self.sample_index(split)
            self._views[split] = part if len(index) == len(part) else part.take(index)
        return self._views[split]

    def sampled_note(self, split: str) -> str | None:
        """'N of M' when checks see a subsample of `split`, for reports; None when they see all of it."""
        seen, total = len(self.view(split)), len(self.dataset.splits[split])
        return None if seen == total else f"{seen} of {total}"

    # -- tensors ------------------------------------------------------------------------------
    @cached_property
    def _raw_cache(self) -> dict:
        return {}

    def raw_inputs(self, split: str):
        """Resized float tensor in the data's own value scale (before normalisation), for view(split)."""
        if split not in self._raw_cache:
            self._raw_cache[split] = self._raw_tensor(self.view(split).x)
        return self._raw_cache[split]

    def _raw_tensor(self, x):
        from dnncheck.probes.inputs import raw_tensor

        ds = self.dataset
        if hasattr(x, "resized"):
            return x.resized(tuple(ds.image_size), self.progress)
        return raw_tensor(x, ds.image_size if ds.is_image else None)

    @cached_property
    def normalizer(self):
        from dnncheck.probes.inputs import fit_normalizer, integer_scale

        ds = self.dataset
        scale = integer_scale(ds.splits["train"].x) if ds.is_image else None
        return fit_normalizer(self.cfg.normalize, self.raw_inputs("train"), scale, ds.is_image)

    @cached_property
    def _input_cache(self) -> dict:
        return {}

    def inputs(self, split: str):
        """The tensor that enters the model for a split (resized and normalised as configured)."""
        if split not in self._input_cache:
            self._input_cache[split] = self.normalizer(self.raw_inputs(split))
        return self._input_cache[split]

    def inputs_of(self, split: str, index):
        """inputs(split)[index], loading only those samples when the whole view is not loaded yet."""
        index = np.asarray(index, dtype=np.int64)
        if split in self._input_cache:
            return self._input_cache[split][index]
        return self.normalizer(self._raw_tensor(self.view(split).take(index).x))

    def raw_inputs_of(self, split: str, index):
        """raw_inputs(split)[index] (resized, not normalised), loading only those samples when needed:
        figures use it, so drawing a few images never fits the normaliser or loads a whole view."""
        index = np.asarray(index, dtype=np.int64)
        if split in self._raw_cache:
            return self._raw_cache[split][index]
        return self._raw_tensor(self.view(split).take(index).x)

    def targets(self, split: str):
        """The labels of view(split), as the loss wants them."""
        import torch

        y = self.view(split).y
        return torch.as_tensor(y, dtype=torch.long if self.dataset.task == "classification" else torch.float32)

    @property
    def eval_split(self) -> str | None:
        """Where held-out metrics are measured: val, else test."""
        part = self.dataset.split("val", "test")
        return None if part is None else part.name

    # -- the model's outputs and loss --------------------------------------------------------
    @cached_property
    def output_info(self):
        """How a fresh model's outputs look on a batch of training inputs."""
        import torch

        from dnncheck.models.introspect import describe_outputs

        model = self.fresh_model().eval()
        with torch.no_grad():
            return describe_outputs(model(self.inputs_of("train", range(min(256, len(self.view("train")))))))

    @property
    def loss_name(self) -> str:
        from dnncheck.probes.losses import resolve_loss_name

        return resolve_loss_name(self.cfg.loss, self.dataset.task)

    @cached_property
    def custom_loss(self):
        """The user's loss for a `pkg.module:fn` spec (imported by prepare), else None."""
        from dnncheck.probes.losses import BUILTIN_LOSSES, load_custom_loss

        name = self.loss_name
        return None if name in BUILTIN_LOSSES else load_custom_loss(name, (self.cfg.base_dir,))

    @cached_property
    def loss_fn(self):
        from dnncheck.probes.losses import make_loss

        unit_range = self.output_info.kind in ("probabilities", "sigmoid")
        return make_loss(self.loss_name, self.dataset.task, unit_range, self.custom_loss)

    # -- the probe plan and its guard -------------------------------------------------------
    @cached_property
    def plan_facts(self):
        """The sizes and settings the probe plan is computed from (nothing machine-dependent)."""
        from dnncheck.probes.plan import PlanFacts

        c = self.cfg
        return PlanFacts(train_samples=len(self.probe_train_index),
                         val_samples=0 if self.probe_val_index is None else len(self.probe_val_index),
                         full_train=len(self.dataset.splits["train"]), batch_size=c.batch_size,
                         epochs=c.epochs, max_train_samples=c.max_train_samples)

    def plan_probes(self, checks) -> None:
        """Decide every probe's work for the selected checks, then time a few steps for the estimate."""
        from dnncheck.probes.budget import Budget
        from dnncheck.probes.plan import build_plan

        requests: dict[str, tuple[dict, list[str]]] = {}
        for check in checks:
            try:
                wanted = check.probes(self)
            except UserError:
                raise
            except Exception:  # e.g. a model whose forward fails: the check reports it when it runs
                continue
            for name, params in wanted.items():
                requests.setdefault(name, (params, []))[1].append(check.id)
        self.plan = build_plan(self.plan_facts, requests)
        self.budget = Budget(self.cfg.budget_seconds, planned=("calibration", *self.plan.probes))
        if self.plan.probes:
            self._calibrate()

    @cached_property
    def plan(self):
        from dnncheck.probes.plan import build_plan

        return build_plan(self.plan_facts, {})

    @cached_property
    def budget(self):
        from dnncheck.probes.budget import Budget

        return Budget(self.cfg.budget_seconds, planned=tuple(self.plan.probes))

    def planned(self, name: str, **params):
        """The plan's entry for probe `name`; a probe no selected check announced (a check run on
        its own) is planned now with `params`, the same way."""
        from dnncheck.probes.plan import PLANNERS

        if name not in self.plan.probes:
            self.plan.probes[name] = PLANNERS[name](self.plan_facts, **params)
        return self.plan.probes[name]

    def _calibrate(self) -> None:
        from dnncheck.probes.plan import CALIBRATION_STEPS, Calibration
        from dnncheck.probes.train import calibrate

        (x, y), val = self.probe_data()
        try:
            with self.budget.timer("calibration"):
                step, per_sample = calibrate(self.fresh_model(), self.loss_fn, x, y, self.probe_settings(),
                                             CALIBRATION_STEPS, None if val is None else val[0])
        except UserError:
            raise
        except Exception:  # a model that cannot train says so in the checks that need it
            return
        self.plan.calibration = Calibration(step, per_sample)

    def plan_record(self) -> dict:
        """`model.probe_plan` for the JSON: the planned work per probe, and what was done of it."""
        plan = self.plan
        probes = []
        for name, spec in plan.probes.items():
            entry = spec.to_dict()
            estimate = plan.estimate(name)
            entry["estimated_seconds"] = None if estimate is None else round(estimate, 2)
            outcome = self._outcomes.get(name, {"steps_done": 0, "cut_short": False})
            entry.update(ran=name in self._outcomes, steps_done=outcome["steps_done"], cut_short=outcome["cut_short"],
                         spent_seconds=round(self.budget.spent.get(name, 0.0), 2))
            probes.append(entry)
        total = plan.estimated_total()
        return {"probes": probes, "budget_seconds": self.cfg.budget_seconds,
                "estimated_seconds": None if total is None else round(total, 2),
                "calibration_seconds": round(self.budget.spent.get("calibration", 0.0), 2)}

    @cached_property
    def _outcomes(self) -> dict:
        return {}

    def _ran(self, name: str, steps: int, cut_short: bool) -> None:
        outcome = self._outcomes.setdefault(name, {"steps_done": 0, "cut_short": False})
        outcome["steps_done"] += steps
        outcome["cut_short"] = outcome["cut_short"] or cut_short

    def _cut_short(self, name: str) -> ProbeCutShort:
        """The exception for a probe the guard stopped, with a budget that would let it finish."""
        done = self._outcomes.get(name, {}).get("steps_done", 0)
        planned = self.plan[name].steps
        spent = self.budget.spent.get(name, 0.0)
        needed = spent * planned / max(1, done)
        allotted = self.budget.guards[name].seconds
        return ProbeCutShort(name, done, planned, spent, self.budget.suggest(needed, allotted))

    # -- probes -----------------------------------------------------------------------------
    @cached_property
    def probe_train_index(self) -> np.ndarray:
        """The probes train on all of view("train") (at most max_train_samples, stratified)."""
        return np.arange(len(self.view("train")))

    @cached_property
    def probe_val_index(self) -> np.ndarray | None:
        """Positions in view(eval split) of the at most MAX_PROBE_VAL samples evaluated each epoch."""
        split = self.eval_split
        if split is None:
            return None
        return subsample_index(self.view(split).y, MAX_PROBE_VAL, self.cfg.seed, self.dataset.task == "classification")

    def probe_settings(self, **overrides):
        from dnncheck.probes.plan import fit_epochs
        from dnncheck.probes.train import ProbeSettings

        c = self.cfg
        values = dict(optimizer=c.optimizer, lr=c.lr, batch_size=c.batch_size, max_epochs=fit_epochs(self.plan_facts),
                      seed=c.seed, device=self.device, weight_decay=c.weight_decay, momentum=c.momentum)
        values.update(overrides)
        return ProbeSettings(**values)

    def probe_data(self, normalizer=None):
        """(train, val) tensor pairs for probes: the subsample of train, and val (or test).

        `normalizer` replaces the configured normalisation (the normalization check compares both).
        """
        def features(split, index):
            whole = len(index) == len(self.view(split))  # no indexed copy of a tensor used whole
            if normalizer is None:
                return self.inputs(split) if whole else self.inputs(split)[index]
            return normalizer(self.raw_inputs(split) if whole else self.raw_inputs(split)[index])

        tr = self.probe_train_index
        train = (features("train", tr), self.targets("train")[tr])
        val = None
        if self.eval_split is not None:
            vi = self.probe_val_index
            val = (features(self.eval_split, vi), self.targets(self.eval_split)[vi])
        return train, val

    def _guarded(self, name: str, work):
        """Run `work(guard)` as probe `name`: timed against the budget, errors of the user's model
        or loss turned into ProbeUnavailable, a tripped guard into ProbeCutShort."""
        guard = self.budget.guard(name)
        try:
            with self.budget.timer(name):
                run = work(guard)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:  # the user's model or loss cannot train on this data
            raise ProbeUnavailable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
        self._ran(name, run.steps, run.stopped_by == "budget")
        if run.stopped_by == "budget":
            raise self._cut_short(name)
        return run

    def train_probe(self, name: str, normalizer=None, model=None, data=None, **overrides):
        """A fresh probe run of the user's model and settings, doing the work the plan fixes for
        `name` (its epochs). `data` = (train, val) tensor pairs replaces the default probe data.

        Raises ProbeUnavailable with the reason when it cannot train, ProbeCutShort when the
        budget guard stopped it.
        """
        from dnncheck.probes.train import train_probe

        spec = self.planned(name)
        settings = self.probe_settings(max_epochs=spec.epochs, record_epochs=spec.evaluate_epochs, **overrides)
        train, val = data if data is not None else self.probe_data(normalizer)
        net = model if model is not None else self.fresh_model()
        return self._guarded(name, lambda guard: train_probe(name, net, self.loss_fn, train, val, self.dataset.task,
                                                             settings, guard, self.progress))

    def fit_probe(self):
        """The model trained briefly on train with the user's settings: one run shared by all checks.

        Raises ProbeUnavailable (or ProbeCutShort) with the reason, every time it is asked.
        """
        if self._probe_error is not None:
            raise self._probe_error
        if "_fit_run" not in self.__dict__:
            try:
                self._fit_run = self.train_probe("fit")
            except ProbeUnavailable as exc:
                self._probe_error = exc
                raise
        return self._fit_run

    def lr_range_test(self, lrs):
        """The learning-rate range test over `lrs` on a fresh model and the probe's training data."""
        from dnncheck.probes.train import range_test

        self.planned("learning-rate", steps=len(lrs))
        (x, y), _ = self.probe_data()
        model = self.fresh_model()
        return self._guarded("learning-rate", lambda guard: range_test(model, self.loss_fn, x, y, self.probe_settings(),
                                                                       lrs, guard))

    def one_batch_fit(self, batch: int, max_steps: int, target_ratio: float):
        """A fresh model trained on the first `batch` training samples (the one-batch test)."""
        from dnncheck.probes.train import fit_one_batch

        spec = self.planned("overfit-batch", batch=batch, max_steps=max_steps)
        x, y = self.inputs_of("train", range(spec.batch_size)), self.targets("train")[: spec.batch_size]
        model = self.fresh_model()
        return self._guarded("overfit-batch", lambda guard: fit_one_batch(model, self.loss_fn, x, y,
                                                                          self.probe_settings(), max_steps,
                                                                          target_ratio, guard))

    def artifact(self, key, compute):
        """A shared result computed once per audit under `key` (e.g. duplicate pairs)."""
        store = self.__dict__.setdefault("_artifacts", {})
        if key not in store:
            store[key] = compute()
        return store[key]

    def environment(self) -> dict:
        import torch

        env = {"python": platform.python_version(), "torch": torch.__version__, "device": self.device,
               "platform": platform.platform(terse=True)}
        if self.device.startswith("cuda"):
            env["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        if self.dataset.scan:  # how this run read the files (differs between a cold and a cached run)
            env["data_pass"] = dict(self.dataset.scan)
        return env


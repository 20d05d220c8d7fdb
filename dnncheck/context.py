"""Context: what checks measure on, each artefact computed once on first use and cached (one
style: `_memo`, and `@memoized` properties built on it).

Checks reach it only through public accessors:
- settings: seed, max_train_samples, user_lr, metric, normalize_setting, has_weights, device;
- data: dataset, view(split), sampled_note(split), eval_split, external;
- tensors: inputs / raw_inputs / targets (per split, of the view), inputs_of / raw_inputs_of (a few
  samples without loading a view), external_inputs / external_targets, normalizer, probe_data;
- the model and loss: fresh_model, user_model, output_info, loss_name, loss_fn;
- probes: fit_probe (the shared run), train_probe, lr_range_test, one_batch_fit, planned; the plan,
  the budget guard and the outcomes live in probes/runner.py (ProbeRunner), which gets tensors and
  callables, never the Context;
- artifact(key, compute): a result two checks share (duplicate pairs).

`prepare()` does what can refuse to start an audit (decode the data, build the model, load the
weights, the external set, import a custom loss, check a given normalisation against the data) so
that its UserErrors surface as exit 2 before any check runs. Everything else is lazy: a check that
never asks for the probe run never pays for it.
"""

from __future__ import annotations

import functools
import platform
import sys

import numpy as np

from dnncheck.data.sampling import subsample_index
from dnncheck.errors import ProbeUnavailable, UserError, raised
from dnncheck.progress import NullProgress

MAX_PROBE_VAL = 2000  # validation/test samples whose pixels are loaded and evaluated each probe epoch
# The pixels one split's view may hold as float32 at the model's input size: at 224x224x3 (602 KB a
# sample) 445 samples; at 64 px and below the sample caps above bind first (5,461 > 5,000), so
# small-image audits see what they always did. Only the normalised view is kept (Context.inputs).
MAX_VIEW_BYTES = 256 * 2**20
MIN_VIEW = 200  # but never fewer samples than this, whatever the input size


def memoized(method):
    """A property computed once per audit and kept with everything else the Context caches (_memo)."""
    @functools.wraps(method)
    def get(self):
        return self._memo(method.__name__, lambda: method(self))
    return property(get)


class FeatureRun:
    """What a forward-only probe reports to the runner: no training steps, never cut short (one
    forward pass is planned and predicted, not stopped midway)."""

    steps = 0
    stopped_by = "plan"


class Context:
    def __init__(self, cfg, progress=None):
        self.cfg = cfg
        self.progress = progress or NullProgress()
        self._memos: dict = {}

    # -- one caching style: everything computed once per audit goes through _memo ---------------
    def _memo(self, key, compute, remember=()):
        """compute() once per audit under `key`; exceptions of the `remember` types are cached and
        raised again on every later ask (a probe that cannot train fails the same way each time)."""
        if key not in self._memos:
            try:
                self._memos[key] = (compute(), None)
            except remember as exc:
                self._memos[key] = (None, exc)
        value, error = self._memos[key]
        if error is not None:
            raise error
        return value

    def _has(self, key) -> bool:
        return key in self._memos

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
    def prepare(self, uses_model: bool = True) -> None:
        """`uses_model` False (the selected checks read the data only): the model is not built nor the
        training recipe validated, so such an audit does not import torch (its import alone is about
        480 MB resident); a loss or a normalisation the user set is still validated (and refused)."""
        if uses_model:
            from dnncheck.probes.train import request_determinism

            request_determinism()  # before anything touches CUDA
        _release_loading_memory(self.dataset)  # reads the data now
        self._note_sampling()
        if not uses_model:
            self.model_info = {"spec": self.model_spec, "built": False}
            # what the user set is still refused now when it is bad, whatever the selection
            if self.cfg.loss is not None:
                self.custom_loss  # noqa: B018
            if isinstance(self.cfg.normalize, dict):
                self._check_normalize_setting()
            return
        self.device  # noqa: B018
        model = self.user_model()  # build and load weights now so errors surface before checks
        self.model_info = {"spec": self.model_spec, **self._param_counts(model)}
        self.external  # noqa: B018 - a bad external set is bad input too
        self.custom_loss  # noqa: B018 - a loss spec that cannot be imported
        self._check_training_recipe()
        self._check_normalize_setting()

    def _check_training_recipe(self) -> None:
        """The optimizer and schedule are built once on a stand-in parameter: a bad name or argument
        is exit 2 now, not an error in every probe."""
        from dnncheck.probes.optim import validate

        c = self.cfg
        try:
            validate(c.optimizer, c.optimizer_args, c.scheduler, c.scheduler_args, c.lr, c.weight_decay, c.momentum,
                     (c.base_dir,))
        except UserError as exc:  # say where the setting came from, as the config's own errors do
            raise UserError(f"{c.origin}: {exc}") from None

    def _check_normalize_setting(self) -> None:
        from dnncheck.probes.inputs import check_normalize_width

        ds = self.dataset
        check_normalize_width(self.cfg.normalize, ds.channels if ds.is_image else len(ds.feature_names), ds.is_image)

    def _note_sampling(self) -> None:
        sampled = [f"{name} {note}" for name in self.dataset.splits if (note := self.sampled_note(name))]
        if sampled:
            self.dataset.notes.append(f"checks that need pixels or a model (probes, projections, figures) use a stratified "
                                      f"sample per split ({', '.join(sampled)}; train: probe.max_train_samples, others: "
                                      f"{MAX_PROBE_VAL}, at most {self.view_cap} at this input size); counts, "
                                      "statistics, duplicates and leakage cover every sample")

    @memoized
    def external(self):
        """The external validation set as a SplitData, or None."""
        from dnncheck.data import load_external

        return load_external(self.cfg, self.dataset, self.progress)

    @memoized
    def _external_index(self) -> np.ndarray:
        """Which external samples are used: at most max_train_samples, stratified."""
        return subsample_index(self.external.y, self.cfg.max_train_samples, self.cfg.seed,
                               self.dataset.task == "classification")

    def external_inputs(self):
        """The external set's tensor (at most max_train_samples of it), resized and normalised like train;
        loaded once per audit."""
        def load():
            external, index = self.external, self._external_index
            return self.normalizer(self._raw_tensor(external.take(index).x if len(index) < len(external) else external.x))

        return self._memo("external inputs", load)

    def external_targets(self) -> np.ndarray:
        """The labels lining up with external_inputs()."""
        return self.external.y[self._external_index]

    @memoized
    def dataset(self):
        from dnncheck.data import load_dataset

        self.progress.stage("loading data")
        return load_dataset(self.cfg, self.progress)

    @memoized
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

        return resolve_spec(self.cfg.model, self.dataset.modality, self.dataset.task)

    @memoized
    def model_inputs(self):
        from dnncheck.models.build import ModelInputs

        ds = self.dataset
        outputs = 1 if ds.task == "regression" else ds.num_classes  # segmentation: channels of N,C,H,W
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

        from dnncheck.models.build import accepts_kept_inputs, single_output

        def returns_a_container() -> bool:
            was_training = model.training
            batch = self._probe_batch()
            try:
                with torch.no_grad():
                    out = model.eval()(batch)
            except (Exception, SystemExit) as exc:  # nothing can be measured on a model that cannot run
                raise UserError(f"model {self.cfg.model}: on 2 training inputs of shape {tuple(batch.shape)} its "
                                f"forward {raised(exc)}; {self._size_advice(model, batch)}") from None
            finally:
                model.train(was_training)
            if isinstance(out, torch.Tensor):
                return False
            size = f" of {len(out)}" if hasattr(out, "__len__") else ""
            self.dataset.notes.append(f"the model returns a {type(out).__name__}{size}; dnncheck audits its "
                                      "logits (a 'logits' entry, else the first tensor): if your loss uses "
                                      "another element, wrap the model to return it")
            return True

        model = accepts_kept_inputs(model)  # on the user's module itself: a wrapper's callers reach it too
        return single_output(model) if self._memo("wraps outputs", returns_a_container) else model

    def _size_advice(self, model, batch) -> str:
        """What to change when the forward failed: the input size the model accepts, when one is
        found on the meta device (the model is about to be discarded)."""
        from dnncheck.models.introspect import accepted_sides, describe_sides

        if batch.ndim != 4:
            return "fix the model, or the data it is given"
        sides = accepted_sides(model, batch.shape[1])
        if sides and batch.shape[2] not in sides:
            return (f"the model runs on inputs of {describe_sides(sides)}: set [data] image_size = "
                    f"[{sides[0]}, {sides[0]}] (or fix the model to accept {batch.shape[2]}x{batch.shape[3]})")
        return "fix the model, or set [data] image_size to the input size it expects"

    def _probe_batch(self):
        """Two training inputs to see what the model's forward returns (its type, not its values):
        normalised when the normaliser is already fitted, else in [0, 1] (integer images) or as
        stored, so that building the model never fits the normaliser on a whole view."""
        if self._has("normalizer"):
            return self.inputs_of("train", range(2))
        from dnncheck.data.dataset import integer_scale

        raw = self.raw_inputs_of("train", range(2))
        scale = integer_scale(self.dataset.splits["train"].x) if self.dataset.is_image else None
        return raw / scale if scale else raw

    @staticmethod
    def _param_counts(model) -> dict:
        from dnncheck.models.introspect import parameter_count

        return parameter_count(model)

    # -- the samples whose pixels are loaded ----------------------------------------------------
    def sample_index(self, split: str) -> np.ndarray:
        """Indices into `split` of the samples whose pixels checks load: the whole split up to
        max_train_samples for train (the probes' sample), MAX_PROBE_VAL for the others (what a probe
        epoch evaluates), else a stratified subsample of that many. Data-wide measurements (counts,
        records, duplicates) cover every sample regardless."""
        part = self.dataset.splits[split]
        cap = min(self.cfg.max_train_samples if split == "train" else min(self.cfg.max_train_samples, MAX_PROBE_VAL),
                  self.view_cap)
        return subsample_index(part.y, cap, self.cfg.seed, self.dataset.task == "classification")

    @property
    def view_cap(self) -> int:
        """Samples per split whose float32 pixels fit MAX_VIEW_BYTES at the model's input size."""
        ds = self.dataset
        if not ds.is_image:
            return 10**12
        per_sample = 4 * max(1, ds.channels) * int(ds.image_size[0]) * int(ds.image_size[1])
        return max(MIN_VIEW, MAX_VIEW_BYTES // per_sample)

    def view(self, split: str):
        """The split restricted to sample_index(split): the split itself when that is all of it.
        Its ids and labels line up with inputs(split) and targets(split)."""
        def restricted():
            part, index = self.dataset.splits[split], self.sample_index(split)
            return part if len(index) == len(part) else part.take(index, with_records=False)

        return self._memo(("view", split), restricted)

    def sampled_note(self, split: str) -> str | None:
        """'N of M' when checks see a subsample of `split`, for reports; None when they see all of it."""
        seen, total = len(self.view(split)), len(self.dataset.splits[split])
        return None if seen == total else f"{seen} of {total}"

    # -- tensors ------------------------------------------------------------------------------
    def raw_inputs(self, split: str):
        """Resized float tensor in the data's own value scale (before normalisation), for view(split)."""
        return self._memo(("raw", split), lambda: self._raw_tensor(self.view(split).x))

    def _raw_tensor(self, x):
        from dnncheck.probes.inputs import raw_tensor

        ds = self.dataset
        if hasattr(x, "resized"):
            return x.resized(tuple(ds.image_size), self.progress)
        return raw_tensor(x, ds.image_size if ds.is_image else None)

    @memoized
    def normalizer(self):
        from dnncheck.data.dataset import integer_scale
        from dnncheck.probes.inputs import fit_normalizer

        ds = self.dataset
        scale = integer_scale(ds.splits["train"].x) if ds.is_image else None
        raw = self._loaded_raw("train")
        fitted = fit_normalizer(self.cfg.normalize, raw, scale, ds.is_image)
        if not self._has(("inputs", "train")):  # the view was read for the fit: keep it as the model sees it
            self._memos[("inputs", "train")] = (self._fed(fitted, "train", raw), None)
        return fitted

    def normalization_summary(self) -> dict:
        """The normaliser for the JSON's data section: as fitted when a check fed the model, else fitted
        now only when train is an in-memory array; for files (or a Dataset) no selected check needed
        their pixels at the model's size, and reading every training image for this line alone took
        most of a data-only audit (25,000 photos: 210 of 300 s, 1.9 GB): said, not fitted."""
        if self._has("normalizer") or isinstance(self.dataset.splits["train"].x, np.ndarray):
            return self.normalizer.describe()
        return {"mode": self.cfg.normalize if isinstance(self.cfg.normalize, str) else "given", "fitted_on": None,
                "not_fitted": "no selected check fed the model, so the training images were not read at its input size"}

    def _fed(self, normalizer, split: str, raw=None):
        """The view of `split` normalised and kept compact (probes.inputs.kept). Normalised in place
        when no check holds the raw view (raw_inputs), so a 224-px view is never held three times."""
        from dnncheck.probes.inputs import kept

        shared = self._has(("raw", split))
        raw = self._loaded_raw(split) if raw is None else raw
        return kept(normalizer(raw) if shared else normalizer.apply_inplace(raw))

    def inputs(self, split: str):
        """The tensor that enters the model for a split (resized and normalised as configured), as
        kept between checks: float16 for a large image view (probes.inputs.kept; the model's forward
        casts it back), so read it with .float() or per chunk. Only this is kept: the raw view is
        held only when a check asks for it (raw_inputs), so a 224-px view costs its memory once."""
        return self._memo(("inputs", split), lambda: self._fed(self.normalizer, split))

    def inputs_once(self, split: str):
        """inputs(split) when it is already held, else computed for this caller and not kept: for a
        check that reads a split no probe trains or evaluates on (a 224-px view is 256 MB)."""
        if self._has(("inputs", split)):
            return self.inputs(split)
        return self.normalizer(self._loaded_raw(split))

    def _loaded_raw(self, split: str):
        """The raw view: the kept one if a check asked for it, else read now and not kept."""
        return self.raw_inputs(split) if self._has(("raw", split)) else self._raw_tensor(self.view(split).x)

    def inputs_of(self, split: str, index):
        """inputs(split)[index] in float32, loading only those samples when the whole view is not loaded yet."""
        index = np.asarray(index, dtype=np.int64)
        if self._has(("inputs", split)):
            return self.inputs(split)[index].float()
        return self.normalizer(self._raw_tensor(self.view(split).take(index).x))

    def raw_inputs_of(self, split: str, index):
        """raw_inputs(split)[index] (resized, not normalised), loading only those samples when needed:
        figures use it, so drawing a few images never fits the normaliser or loads a whole view."""
        index = np.asarray(index, dtype=np.int64)
        if self._has(("raw", split)):
            return self.raw_inputs(split)[index]
        return self._raw_tensor(self.view(split).take(index).x)

    def split_inputs(self, split: str, chunk: int = 256, raw: bool = False):
        """Every sample of a split (not only its view), chunk by chunk, in order: the tensor as the model
        receives it, or resized in the data's own scale with raw=True. Files are read per chunk."""
        part = self.dataset.splits[split]
        for start in range(0, len(part), chunk):
            x = self._raw_tensor(part.take(np.arange(start, min(start + chunk, len(part)))).x)
            yield x if raw else self.normalizer(x)

    def targets(self, split: str):
        """The labels of view(split), as the loss wants them."""
        import torch

        y = self.view(split).y
        task = self.dataset.task
        if task == "segmentation":  # masks at the model's input size, as the images are resized
            from dnncheck.data.resize import nearest_masks

            return torch.as_tensor(nearest_masks(y, tuple(self.dataset.image_size)), dtype=torch.long)
        return torch.as_tensor(y, dtype=torch.long if task == "classification" else torch.float32)

    @property
    def eval_split(self) -> str | None:
        """Where held-out metrics are measured: val, else test."""
        part = self.dataset.split("val", "test")
        return None if part is None else part.name

    # -- the model's outputs and loss --------------------------------------------------------
    @memoized
    def output_info(self):
        """How a fresh model's outputs look on a batch of training inputs."""
        from dnncheck.models.introspect import describe_model_outputs

        model = self.fresh_model().eval()
        return describe_model_outputs(model, self.inputs_of("train", range(min(256, len(self.view("train"))))))

    @property
    def loss_name(self) -> str:
        from dnncheck.probes.losses import resolve_loss_name

        return resolve_loss_name(self.cfg.loss, self.dataset.task)

    @memoized
    def custom_loss(self):
        """The user's loss for a `pkg.module:fn` spec (imported by prepare), else None."""
        from dnncheck.probes.losses import BUILTIN_LOSSES, load_custom_loss

        name = self.loss_name
        return None if name in BUILTIN_LOSSES else load_custom_loss(name, (self.cfg.base_dir,))

    @memoized
    def loss_fn(self):
        from dnncheck.probes.losses import make_loss

        unit_range = self.output_info.kind in ("probabilities", "sigmoid")
        return make_loss(self.loss_name, self.dataset.task, unit_range, self.custom_loss)

    # -- the probe plan and its guard (probes/runner.py) -------------------------------------
    @memoized
    def probe_runner(self):
        """Plans the probes from the data's sizes and settings (nothing machine-dependent) and runs
        each under the budget guard."""
        from dnncheck.probes.plan import PlanFacts
        from dnncheck.probes.runner import ProbeRunner

        c = self.cfg
        facts = PlanFacts(train_samples=len(self.probe_train_index),
                          val_samples=0 if self.probe_val_index is None else len(self.probe_val_index),
                          full_train=len(self.dataset.splits["train"]), batch_size=c.batch_size,
                          epochs=c.epochs, max_train_samples=c.max_train_samples)
        return ProbeRunner(facts, c.budget_seconds)

    def plan_probes(self, checks) -> None:
        """Decide every probe's work for the selected checks, then time a few steps for the estimate."""
        requests: dict[str, tuple[dict, list[str]]] = {}
        for check in checks:
            if not check.applies_to(self.dataset.task):
                continue
            try:
                wanted = check.probes(self)
            except UserError:
                raise
            except Exception:  # e.g. a model whose forward fails: the check reports it when it runs
                continue
            for name, params in wanted.items():
                requests.setdefault(name, (params, []))[1].append(check.id)
        if not requests:  # nothing trains: no device to ask torch about (nor torch to import)
            self.probe_runner.plan_probes(requests, self._calibration, None, "cpu", [])
            return
        self.probe_runner.plan_probes(requests, self._calibration, self._model_cost(),
                                      "cuda" if self.device.startswith("cuda") else "cpu", self.cheaper_settings())

    def cheaper_settings(self) -> list[str]:
        """Settings that make the probes cheaper, for the budget advice: the device, the pixels (a
        step costs about in proportion to them) and the samples cross-fitting and evaluation cover."""
        ds, out = self.dataset, []
        if not self.device.startswith("cuda"):
            out.append("a GPU (--device cuda)")
        if ds.is_image and min(ds.image_size) >= 64:
            h, w = ds.image_size
            out.append(f"[data] image_size = [{h // 2}, {w // 2}] (a quarter of the pixels)")
        if len(self.probe_train_index) >= 2000:
            out.append(f"[probe] max_train_samples = {len(self.probe_train_index) // 2}")
        return out

    def _model_cost(self):
        """The model's FLOPs and activations per sample at its input size (probes/cost.py): what the
        plan predicts each probe's time from, identically on every machine of a device type."""
        from dnncheck.probes.cost import measure_cost

        return measure_cost(self.fresh_model(), self._probe_batch()[:1])

    def _calibration(self):
        """A few timed steps on the probe data (loaded here, before the timer starts)."""
        from dnncheck.probes.plan import CALIBRATION_STEPS
        from dnncheck.probes.train import calibrate

        (x, y), val = self.probe_data()
        return lambda: calibrate(self.fresh_model(), self.loss_fn, x, y, self.probe_settings(), CALIBRATION_STEPS,
                                 None if val is None else val[0])

    def planned(self, name: str, **params):
        """The plan's entry for probe `name` (planned now with `params` if no check announced it)."""
        return self.probe_runner.planned(name, **params)

    def plan_record(self) -> dict:
        """`model.probe_plan` for the JSON, with the training the probes imitate."""
        return {**self.probe_runner.record(), "training": self.training_recipe()}

    def training_recipe(self) -> dict:
        """The user's optimizer, learning rate and schedule as the probes apply them (as configured
        when no probe runs: naming them as torch.optim spells them would import torch for nothing)."""
        c = self.cfg
        if not self.probe_runner.record().get("probes"):
            def written(spec, args):
                return spec + (f"({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else "")

            return {"optimizer": written(c.optimizer, c.optimizer_args), "lr": c.lr, "batch_size": c.batch_size,
                    "schedule": written(c.scheduler, c.scheduler_args) if c.scheduler else None}
        from dnncheck.probes.optim import describe_optimizer, describe_schedule

        return {"optimizer": describe_optimizer(c.optimizer, c.optimizer_args), "lr": c.lr,
                "batch_size": c.batch_size, "schedule": describe_schedule(c.scheduler, c.scheduler_args)}

    @property
    def probe_seconds(self) -> dict[str, float]:
        return self.probe_runner.spent

    # -- probes -----------------------------------------------------------------------------
    @memoized
    def probe_train_index(self) -> np.ndarray:
        """The probes train on all of view("train") (at most max_train_samples, stratified)."""
        return np.arange(len(self.view("train")))

    @memoized
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
        values = dict(optimizer=c.optimizer, lr=c.lr, batch_size=c.batch_size, max_epochs=fit_epochs(self.probe_runner.facts),
                      seed=c.seed, device=self.device, weight_decay=c.weight_decay, momentum=c.momentum,
                      optimizer_args=tuple(c.optimizer_args.items()), scheduler=c.scheduler,
                      scheduler_args=tuple(c.scheduler_args.items()), search_dir=str(c.base_dir))
        values.update(overrides)
        return ProbeSettings(**values)

    def probe_positions(self, name: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions in view("train") and view(eval split) that probe `name` trains on and evaluates:
        the probes' subsamples, cut to a compact probe's sizes (stratified, seeded) when the plan
        gave `name` its compact form."""
        tr, vi = self.probe_train_index, self.probe_val_index
        spec = None if name is None else self.probe_runner.plan.probes.get(name)
        if spec is None or not spec.compact or not 0 < spec.train_samples < len(tr):
            return tr, vi
        stratify = self.dataset.task == "classification"
        tr = tr[subsample_index(self.view("train").y[tr], spec.train_samples, self.cfg.seed, stratify)]
        if vi is not None and spec.val_samples is not None:
            vi = vi[subsample_index(self.view(self.eval_split).y[vi], spec.val_samples, self.cfg.seed, stratify)]
        return tr, vi

    def probe_data(self, normalizer=None, probe: str | None = None):
        """(train, val) tensor pairs for probes: the subsample of train, and val (or test); for
        `probe`, the positions it was planned on (probe_positions).

        `normalizer` replaces the configured normalisation (the normalization check compares both).
        """
        def features(split, index):
            whole = len(index) == len(self.view(split))  # no indexed copy of a tensor used whole
            if normalizer is None:
                return self.inputs(split) if whole else self.inputs(split)[index]
            return normalizer(self.raw_inputs(split) if whole else self.raw_inputs(split)[index])

        tr, vi = self.probe_positions(probe)
        train = (features("train", tr), self.targets("train")[tr])
        val = None
        if self.eval_split is not None:
            val = (features(self.eval_split, vi), self.targets(self.eval_split)[vi])
        return train, val

    def train_probe(self, name: str, normalizer=None, model=None, data=None, **overrides):
        """A fresh probe run of the user's model and settings, doing the work the plan fixes for
        `name` (its epochs). `data` = (train, val) tensor pairs replaces the default probe data.

        Raises ProbeUnavailable with the reason when it cannot train, ProbeCutShort when the
        budget guard stopped it.
        """
        from dnncheck.probes.train import train_probe

        spec = self.planned(name)
        settings = self.probe_settings(**{"max_epochs": spec.epochs, "record_epochs": spec.evaluate_epochs,
                                          "batch_size": spec.batch_size, **overrides})
        train, val = data if data is not None else self.probe_data(normalizer, probe=name)
        net = model if model is not None else self.fresh_model()
        run = self.probe_runner.guarded(name, lambda guard: train_probe(name, net, self.loss_fn, train, val,
                                                                        self.dataset.task, settings, guard,
                                                                        self.progress))
        run.compact = spec.compact
        return run

    def fit_probe(self):
        """The model trained briefly on train with the user's settings: one run shared by all checks.

        Raises ProbeUnavailable (or ProbeCutShort) with the reason, every time it is asked.
        """
        return self._memo("fit run", lambda: self.train_probe("fit"), remember=ProbeUnavailable)

    def fit_probe_if_planned(self):
        """The shared fit run when the plan runs it, else None: for a check that reads it only as
        extra evidence and must not start a training the plan did not budget."""
        plan = self.probe_runner.plan
        if "fit" not in plan.probes or "fit" in plan.not_run:
            return None
        try:
            return self.fit_probe()
        except ProbeUnavailable:
            return None

    def lr_range_test(self, lrs):
        """The learning-rate range test over `lrs` on a fresh model and the probe's training data."""
        from dnncheck.probes.train import range_test

        spec = self.planned("learning-rate", steps=len(lrs))
        (x, y), _ = self.probe_data(probe="learning-rate")
        model = self.fresh_model()
        return self.probe_runner.guarded("learning-rate", lambda guard: range_test(
            model, self.loss_fn, x, y, self.probe_settings(batch_size=spec.batch_size), lrs, guard,
            from_start=spec.compact))

    def one_batch_fit(self, batch: int, max_steps: int, target_ratio: float, pixel_ratio: float | None = None):
        """A fresh model trained on the first `batch` training samples (the one-batch test);
        `pixel_ratio`: segmentation's pixel-error rule (probes/train.py:fit_one_batch)."""
        from dnncheck.probes.train import fit_one_batch

        def run():
            spec = self.planned("overfit-batch", batch=batch, max_steps=max_steps)
            x, y = self.inputs_of("train", range(spec.batch_size)), self.targets("train")[: spec.batch_size]
            model = self.fresh_model()
            return self.probe_runner.guarded("overfit-batch", lambda guard: fit_one_batch(
                model, self.loss_fn, x, y, self.probe_settings(), spec.steps, target_ratio, guard, pixel_ratio))

        # one run shared by overfit (its verdict) and learning-rate (a second opinion)
        return self._memo(("one batch", batch, max_steps, target_ratio, pixel_ratio), run, remember=ProbeUnavailable)

    def frozen_feature_probabilities(self, x, y, fold) -> dict:
        """The compact label-noise probe: out-of-sample probabilities of a linear head on the fresh
        model's frozen features (probes/crossfit.py), timed and guarded as probe "label-noise"."""
        from dnncheck.probes.crossfit import frozen_feature_probabilities

        model = self.fresh_model()
        done = {}

        def work(_guard):
            done.update(frozen_feature_probabilities(model, x, y, fold, self.dataset.num_classes, self.device))
            return FeatureRun()

        self.probe_runner.guarded("label-noise", work)
        return done

    def artifact(self, key, compute):
        """A shared result computed once per audit under `key` (e.g. duplicate pairs)."""
        return self._memo(("artifact", key), compute)

    def environment(self) -> dict:
        if "torch" not in sys.modules:  # an audit of data-only checks: nothing ran on a device
            from importlib.metadata import version

            device = self.cfg.device if self.cfg.device != "auto" else "cpu"
            return {"python": platform.python_version(), "torch": version("torch"), "device": device,
                    "platform": platform.platform(terse=True), **self._data_pass()}
        import torch

        env = {"python": platform.python_version(), "torch": torch.__version__, "device": self.device,
               "platform": platform.platform(terse=True), **self._data_pass()}
        if self.device.startswith("cuda"):
            env["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return env

    def _data_pass(self) -> dict:
        """How this run read the files (differs between a cold and a cached run)."""
        return {"data_pass": dict(self.dataset.scan)} if self.dataset.scan else {}


LARGE_RECORDS_BYTES = 64 * 2**20  # records of about 7,000 images: below, the 85 ms a release costs buys little


def _release_loading_memory(ds) -> None:
    """Loading frees what it read through, but glibc keeps the freed heap (0.22 GiB of 1.38 after
    loading 25,000 photos' records with the first version of the cache read). Handed back once for a
    large dataset, as after each check (runner.release_freed_memory)."""
    from dnncheck.runner import release_freed_memory

    if sum(p.records.nbytes for p in ds.splits.values() if p.records is not None) >= LARGE_RECORDS_BYTES:
        release_freed_memory()

"""Building the model from a spec: a built-in name, pkg.module:factory, or a TorchScript file."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from dnncheck.errors import UserError, first_line, raised, require_regular_file
from dnncheck.importing import import_object

BUILTINS = ("mlp", "smallcnn", "resnet18", "segnet")
TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".pth", ".jit")


@dataclass(frozen=True)
class ModelInputs:
    """What a factory may be told about the data."""
    num_classes: int  # output units: classes, or 1 for regression
    in_channels: int  # image channels, or the number of features of a table
    image_size: tuple[int, int] | None  # None for tables


def resolve_spec(spec: str, modality: str, task: str = "classification") -> str:
    if spec == "auto":
        if task == "segmentation":
            return "segnet"
        return "smallcnn" if modality == "image" else "mlp"
    return spec


def build_model(spec: str, inputs: ModelInputs, base_dir: Path = Path.cwd()):
    """A freshly initialised model (the caller seeds torch first so builds are reproducible)."""
    import torch

    if spec in BUILTINS:
        return _builtin(spec, inputs)
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if spec.lower().endswith(TORCHSCRIPT_SUFFIXES) and ":" not in spec:
        if not path.is_file():
            raise UserError(f"{path}: TorchScript model file not found")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise UserError(f"{path}: not a loadable TorchScript model ({first_line(exc)}); "
                            "save it with torch.jit.save(torch.jit.script(model), path)") from None
    if ":" not in spec:
        raise UserError(f"--model {spec!r}: unknown model; use one of {', '.join(BUILTINS)}, "
                        "pkg.module:factory or a TorchScript file (.ts)")
    return _from_factory(spec, inputs, base_dir)


def _builtin(name: str, inputs: ModelInputs):
    from dnncheck.models import nets

    if name == "mlp":
        return nets.MLP(nets.flat_size(inputs.in_channels, inputs.image_size), inputs.num_classes)
    if inputs.image_size is None:
        raise UserError(f"--model {name}: needs images but the data is a table; use --model mlp")
    if name == "smallcnn":
        return nets.SmallCNN(inputs.in_channels, inputs.num_classes, inputs.image_size)
    if name == "segnet":
        return nets.SegNet(inputs.in_channels, inputs.num_classes)
    return nets.resnet18(inputs.in_channels, inputs.num_classes)


def _from_factory(spec: str, inputs: ModelInputs, base_dir: Path):
    import torch

    factory = import_object(spec, "model factory", (base_dir,))
    if not callable(factory):
        raise UserError(f"model factory {spec!r} is not callable")
    offered = {"num_classes": inputs.num_classes, "in_channels": inputs.in_channels,
               "image_size": inputs.image_size, "num_features": inputs.in_channels}
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in offered.items() if takes_any or k in params}
        if inputs.image_size is None:
            kwargs.pop("image_size", None)
    except (TypeError, ValueError):
        kwargs = {}
    try:
        model = factory(**kwargs)
    except (Exception, SystemExit) as exc:
        raise UserError(f"model factory {spec!r} {raised(exc)} "
                        f"(called with {', '.join(f'{k}={v}' for k, v in kwargs.items()) or 'no arguments'})") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model, weights: Path) -> None:
    """Load a state_dict saved with torch.save; only tensors are unpickled (weights_only=True)."""
    import torch

    require_regular_file(weights, "weights file", "pass a state_dict saved with torch.save(model.state_dict(), path)")
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{weights}: cannot load it as a state_dict ({first_line(exc)}); "
                        "save with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise UserError(f"{weights}: holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise UserError(f"{weights}: does not match the model ({detail[:300]}); "
                        "check --model and the number of classes") from None


def first_tensor(out):
    """The outputs dnncheck audits: the tensor itself, a mapping's `logits` (Hugging Face style),
    else the first tensor in a tuple, list or mapping (a main head before auxiliary ones)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"the model's forward returned {type(out).__name__}, which holds no tensor")


def _float32_input(module, args):
    """Forward pre-hook: a float16 input (a view kept compact, probes.inputs.kept) as float32."""
    import torch

    if args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.float16:
        return (args[0].float(), *args[1:])
    return None


def accepts_kept_inputs(model):
    """`model` (in place) with its forward casting float16 inputs to float32, on whatever device they
    are: every probe, forward pass and feature extraction can be handed slices of the kept views
    without a float32 copy of a whole view. Not for a model whose own parameters are float16."""
    import torch

    if not any(p.dtype == torch.float16 for p in model.parameters()):
        model.register_forward_pre_hook(_float32_input)
    return model


def single_output(model):
    """`model` wrapped so that forward returns one tensor (see first_tensor)."""
    import torch

    class FirstTensorOutput(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner
            self.audits_first_of_several = True  # checks ask which parameters feed only the other outputs

        def forward(self, x):
            return first_tensor(self.model(x))

    return FirstTensorOutput(model)


def auxiliary_parameters(model, x) -> set[str]:
    """Names (as in `model.named_parameters()`) of the parameters that feed only outputs other than
    the one dnncheck audits and trains on: an auxiliary head (Inception's, a deep-supervision
    branch) that the user's own loss reads and the probes' loss does not. Empty for a model with
    one output. One forward and two gradient passes on `x` (a sample or two)."""
    import torch

    if not getattr(model, "audits_first_of_several", False):
        return set()
    out = model.model(x)
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else [out]
    main = first_tensor(out)
    others = [v for v in values if isinstance(v, torch.Tensor) and v is not main and v.requires_grad]
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not others or not params:
        return set()

    def reached(outputs) -> set[str]:
        total = sum(o.float().sum() for o in outputs)
        grads = torch.autograd.grad(total, [p for _, p in params], allow_unused=True, retain_graph=True)
        return {name for (name, _), g in zip(params, grads) if g is not None}

    return reached(others) - reached([main]) if main.requires_grad else reached(others)

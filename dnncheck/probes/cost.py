"""What a probe costs on a device type, predicted from the model itself, never from a clock.

A model's cost per sample is two numbers measured once on one input at the model's input size:
its forward FLOPs (torch.utils.flop_counter.FlopCounterMode: matrix products and convolutions) and
its activations (elements output by its leaf modules: memory traffic, which is what depthwise
convolutions cost). A training step over a batch is predicted as

    step_overhead + batch x (3 x FLOPs / flops_per_second + activations x seconds_per_activation)

(backward about twice the forward), and evaluating a sample as a third of a sample's training
cost. The constants are per device type, so the same model, data and device type always give the
same prediction and the same plan, on a quiet laptop or a busy CI runner.

CPU constants: a least-squares fit (relative error) on this project's 2-core reference machine,
quiet (torch 2.14, two threads, Adam, batches of 16 and 64), over torchvision resnet18 at 224 and
64 px, a CIFAR ResNet-18, mobilenet_v3_small and efficientnet_b0 at 224 px and the pytorch/examples
MNIST net: 291 GFLOP/s, 3.1 ns per activation element and 5.9 ms per step, every measured step
within 0.83-1.32x of the fit (benchmarks/bench_clients.py --speeds prints the table). The plan uses
half that speed, because CI runners are shared: beside two CPU-bound processes a 2-core machine
gives torch about half its time, and a plan that fits only a quiet machine would be cut short by
the guard on a busy one (inconclusive).

CUDA constants, measured on an NVIDIA H200 (torch 2.11, bf16 autocast, channels_last, Adam, batches
of 8, 64 and 256; `bench_clients.py --speeds --device cuda`): a step costs about 1.5 ms plus 0.15 ms
per leaf module (the host launching kernels: 2.4 ms for the MNIST net's 6 modules, 9-10 ms for
resnet18's 52 at any batch up to 64, 36 ms for efficientnet_b0's 230), and at batch 256 about 490
TFLOP/s and 2.7 ps per activation element. The plan takes 2 ms plus 0.2 ms per module for the host
and 10 TFLOP/s and 20 ps per element for the GPU: fifty times below the H200's compute, because the
plan is per device type and users' GPUs range down to a T4 running float32 (8 TFLOP/s; no native bf16).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSpeed:
    name: str  # for people: "CPU", "GPU"
    flops_per_second: float
    seconds_per_activation: float
    step_overhead: float  # optimizer, Python and launch costs of one training step
    # launch costs per leaf module and step: on a GPU the host launching kernels is the bottleneck of
    # small batches (an H200 took 2.4 ms per step for a 6-module net, 36 ms for efficientnet_b0's 230)
    seconds_per_module: float = 0.0


SHARED_RUNNER_SLOWDOWN = 2.0  # what two CPU-bound neighbours do to a 2-core machine's probe steps
SPEEDS = {
    "cpu": DeviceSpeed("CPU", 291e9 / SHARED_RUNNER_SLOWDOWN, 3.1e-9 * SHARED_RUNNER_SLOWDOWN,
                       0.0059 * SHARED_RUNNER_SLOWDOWN),
    "cuda": DeviceSpeed("GPU", 10e12, 2e-11, 0.002, 2e-4),
}


def speed_of(device_type: str) -> DeviceSpeed:
    return SPEEDS.get(device_type, SPEEDS["cpu"])


@dataclass(frozen=True)
class ModelCost:
    flops: float  # forward FLOPs per sample at the input size
    activations: float  # elements output by leaf modules per sample
    modules: int = 0  # leaf modules (each launches its kernels every step)

    def train_seconds(self, speed: DeviceSpeed, steps: int, batch: int) -> float:
        per_sample = 3 * self.flops / speed.flops_per_second + self.activations * speed.seconds_per_activation
        return steps * (speed.step_overhead + self.modules * speed.seconds_per_module + batch * per_sample)

    def eval_seconds(self, speed: DeviceSpeed, samples: int) -> float:
        per_sample = self.flops / speed.flops_per_second + self.activations * speed.seconds_per_activation / 3
        return samples * per_sample

    def to_dict(self) -> dict:
        return {"flops_per_sample": round(self.flops), "activations_per_sample": round(self.activations),
                "leaf_modules": self.modules}


def measure_cost(model, sample) -> ModelCost | None:
    """The model's cost on one input (a 1-sample batch), in eval mode without gradients; None when
    it cannot be counted (a TorchScript model, a forward the counter cannot trace)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(model, torch.jit.ScriptModule):
        return None
    leaves = [m for m in model.modules() if not list(m.children())]
    elements = [0]

    def count(_module, _inputs, output):
        if torch.is_tensor(output):
            elements[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(sample)
        flops = float(counter.get_total_flops())
    except Exception:  # the counter's dispatch cannot follow every model; then nothing is predicted
        return None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return ModelCost(flops / len(sample), elements[0] / len(sample), len(leaves))

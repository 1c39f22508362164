"""Time our DCNv2 (the C++ kernel on the CPU, and the PyTorch operations around grid_sample that
run where it cannot be built) against torchvision's deform_conv2d (when importable).

One DCN layer as EDVR's PCD alignment uses it: 64 channels, 8 deformable groups, 3x3 kernel,
on a 180x320 feature map (an EDVR-M L1 map of a 180x320 frame), batch 1, float32. Ours get
channels_last tensors, as EDVR gives them on the CPU; torchvision gets the default layout.

    python benchmarks/dcn.py [--device cpu] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from models import dcn_native
from models.dcn import modulated_deform_conv2d, torchvision_available


def make_inputs(device, channels=64, groups=8, height=180, width=320, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, height, width, generator=gen)
    offset = torch.randn(1, 2 * groups * 9, height, width, generator=gen) * 2
    mask = torch.rand(1, groups * 9, height, width, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen) / 24
    bias = torch.zeros(channels)
    return [t.to(device) for t in (x, offset, mask, weight, bias)]


def ours(x, offset, mask, weight, bias):
    if x.device.type == "cpu":
        x, offset, mask = (t.contiguous(memory_format=torch.channels_last) for t in (x, offset, mask))
    return modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1)


def ours_with_kernel(use_kernel: bool):
    def run(*inputs):
        os.environ[dcn_native.DISABLE_VARIABLE] = "1" if use_kernel else "0"
        return ours(*inputs)
    return run


def theirs(x, offset, mask, weight, bias):
    from torchvision.ops import deform_conv2d
    return deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)


def seconds_per_call(fn, inputs, backward, repeats):
    def once():
        if backward:
            args = [t.detach().requires_grad_() for t in inputs]
            fn(*args).square().mean().backward()
        else:
            with torch.no_grad():
                fn(*inputs)
        if inputs[0].is_cuda:
            torch.cuda.synchronize()

    once()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    inputs = make_inputs(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    implementations = {"ours, PyTorch ops (grid_sample)": ours_with_kernel(False)}
    if args.device == "cpu" and dcn_native.available():
        implementations = {"ours, C++ kernel": ours_with_kernel(True), **implementations}
        kernel, ops = (ours_with_kernel(flag)(*inputs) for flag in (True, False))
        print(f"max |C++ kernel - PyTorch ops| = {(kernel - ops).abs().max().item():.2e}")
    if torchvision_available():
        import torchvision
        implementations[f"torchvision {torchvision.__version__}"] = theirs
        diff = (ours_with_kernel(True)(*inputs) - theirs(*inputs)).abs().max().item()
        print(f"max |ours - torchvision| = {diff:.2e}")
    else:
        print("torchvision not importable: timing ours only")
    print("| implementation | forward (ms) | forward+backward (ms) |")
    print("|---|---|---|")
    for name, fn in implementations.items():
        forward = seconds_per_call(fn, inputs, False, args.repeats) * 1e3
        both = seconds_per_call(fn, inputs, True, args.repeats) * 1e3
        print(f"| {name} | {forward:.0f} | {both:.0f} |")


if __name__ == "__main__":
    main()

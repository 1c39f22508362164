"""Time the C++ DCN kernel's im2col and col2im alone, on one thread, in each of its builds.

Two shapes: the builtin-qe training step's full-resolution DCN (8 images, 16 channels, 4
deformable groups, 32x32, offsets of +-2 px) and one EDVR-M PCD layer (64 channels, 8 groups,
180x320). Each kernel source given (default: models/dcn_native.cpp; pass an older copy, e.g.
from `git show <commit>:models/dcn_native.cpp`, to compare) is built into its own operator
namespace, so all of them run interleaved in one process; a source with an AVX2 build is timed
in it and in its portable build (EDVR_DCN_ISA=portable). Prints the best of --repeats per
variant and the largest difference of each variant's results from the first one's.

    python benchmarks/dcn_kernel.py [--sources old.cpp models/dcn_native.cpp] [--repeats 9]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.dcn_native import ISA_VARIABLE  # noqa: E402

SHAPES = {"training DCN": (8, 16, 32, 32, 4), "EDVR-M layer": (1, 64, 180, 320, 8)}
GEOMETRY = [3, 3, 1, 1, 1, 1, 1, 1]  # 3x3, stride 1, padding 1, dilation 1


def build(source: Path, folder: Path):
    """The kernel in `source`, its operators renamed to a namespace of their own."""
    text = source.read_text()
    namespace = "dcn_" + hashlib.sha256(text.encode()).hexdigest()[:10]
    renamed = folder / f"{namespace}.cpp"
    renamed.write_text(text.replace("edvr_dcn", namespace))
    (folder / namespace).mkdir(exist_ok=True)
    load(namespace, [str(renamed)], extra_cflags=["-O3"], build_directory=str(folder / namespace),
         is_python_module=False, verbose=False)
    return getattr(torch.ops, namespace)


def inputs(n, c, h, w, groups):
    gen = torch.Generator().manual_seed(0)
    padded = torch.zeros(n, h + 4, w + 4, c)
    padded[:, 2:-2, 2:-2] = torch.randn(n, h, w, c, generator=gen)
    offset = torch.randn(n, h, w, groups * 9 * 2, generator=gen) * 2
    mask = torch.rand(n, h, w, groups * 9, generator=gen)
    grad_columns = torch.randn(n * h * w, 9 * c, generator=gen)
    return padded, offset, mask, grad_columns


def run(ops, isa: str, which: str, tensors) -> tuple[float, list[torch.Tensor]]:
    padded, offset, mask, grad_columns = tensors
    n, h, w = offset.shape[:3]
    os.environ[ISA_VARIABLE] = isa
    if which == "im2col":
        columns = torch.empty(n, h * w, grad_columns.shape[1])
        start = time.perf_counter()
        for b in range(n):
            ops.im2col(padded, offset, mask, columns[b], GEOMETRY, b, 0, h)
        return time.perf_counter() - start, [columns]
    grad_x, grad_offset, grad_mask = torch.zeros_like(padded), torch.empty_like(offset), torch.empty_like(mask)
    start = time.perf_counter()
    ops.col2im(padded, offset, mask, grad_columns, grad_x, grad_offset, grad_mask, GEOMETRY)
    return time.perf_counter() - start, [grad_x[:, 2:-2, 2:-2], grad_offset, grad_mask]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, nargs="+", default=[REPO / "models" / "dcn_native.cpp"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = []
    with tempfile.TemporaryDirectory() as temp:
        for number, source in enumerate(args.sources, 1):
            ops = build(source, Path(temp))
            isas = ["portable"]
            if hasattr(ops, "vector_isa"):
                os.environ.pop(ISA_VARIABLE, None)
                if ops.vector_isa() != "portable":
                    isas.append("")  # the build this CPU gets
            variants += [(f"{number}. {source.name} {isa or ops.vector_isa()}", ops, isa) for isa in isas]
        for shape_name, shape in SHAPES.items():
            tensors = inputs(*shape)
            for which in ("im2col", "col2im"):
                best, results = {}, {}
                for _ in range(args.repeats):
                    for name, ops, isa in variants:
                        seconds, results[name] = run(ops, isa, which, tensors)
                        best[name] = min(best.get(name, seconds), seconds)
                first = results[variants[0][0]]
                cells = []
                for name, _, _ in variants:
                    diff = max(float((a - b).abs().max()) for a, b in zip(first, results[name]))
                    cells.append(f"{name}: {best[name] * 1000:.2f} ms (diff {diff:.1e})")
                print(f"{shape_name}, {which}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()

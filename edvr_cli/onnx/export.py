"""EDVR to ONNX: a graph that ONNX Runtime, TensorRT and VapourSynth's ONNX backends can run.

The exported graph maps `frames` (N, T, 3, H, W) float32 RGB in [0, 1] to `restored`
(N, 3, H * scale, W * scale) float32; N, H and W are dynamic. H and W may be any size: the graph
pads them to the network's size multiple (edge/replicate padding on the right and bottom, as
`EDVR.forward` does) and crops the output back, so a caller needs no padding of its own. The
multiple is also stored in the metadata, for runtimes that want padded input anyway.

Layout `nchw` is for VapourSynth's vs-mlrt, which feeds one 4-D tensor: the planes of its clips
stacked as channels. There the input is `input` (N, 3T, H, W), frame-major (frame 0's R, G, B,
then frame 1's, ...), reshaped to (N, T, 3, H, W) inside the graph.

Why ONNX can express EDVR here: the deformable convolution (models/dcn.py) is plain PyTorch around
`grid_sample`, which ONNX has as GridSample from opset 16 on; that is the lowest opset that works.

The graph comes from PyTorch's TorchScript-based exporter (`torch.onnx.export(dynamo=False)`):
it needs nothing beyond torch, and the tracing it does is checked against PyTorch at two frame
sizes (`verify_export`) before the file is written.

    from edvr_cli.onnx.export import export_onnx
    info = export_onnx(network, "model.onnx", source="builtin-qe", source_path="models/weights/builtin-qe.pth")
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import write_atomically
from models.errors import EdvrError

MIN_OPSET = 16  # GridSample (the DCN's bilinear sampling) first appears in opset 16
LAYOUTS = ("ntchw", "nchw")
INPUT_NAMES = {"ntchw": "frames", "nchw": "input"}  # vs-mlrt's TensorRT backend names its input `input`
OUTPUT_NAME = "restored"
# largest |ONNX Runtime - PyTorch| accepted by verify_export; fp16 is checked against PyTorch
# running the same fp16 convolutions, which ONNX Runtime's CPU provider computes in float32
VERIFY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


class ExportError(EdvrError, ValueError):
    """The model cannot be exported as asked, or the export does not match PyTorch; one line."""


class PaddedEDVR(nn.Module):
    """EDVR with its padding to the size multiple always in the graph, for tracing.

    `EDVR.forward` pads only `if` the size is not a multiple; a trace would freeze that branch
    at the example's size. Here the pad amounts are computed from the input shape on every call
    (zero when the size already fits), so one exported graph serves every H and W.

    Args:
        network: an EDVR (anything with `_forward_padded`, `size_multiple`, `scale`, `num_frame`).
        layout: 'ntchw' (input (n, t, 3, h, w)) or 'nchw' (input (n, 3t, h, w), frame-major).
    """

    def __init__(self, network: nn.Module, layout: str = "ntchw"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ExportError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.network = network
        self.layout = layout
        self.size_multiple = int(network.size_multiple)
        self.scale = int(network.scale)
        self.num_frame = int(network.num_frame)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (n, t, c, h, w) float in [0, 1] (or (n, t * c, h, w) with layout 'nchw').
        Returns (n, c, h * scale, w * scale)."""
        if self.layout == "nchw":
            frames = frames.reshape(frames.shape[0], self.num_frame, -1, *frames.shape[2:])
        n, t, c, h, w = frames.shape
        multiple = self.size_multiple
        pad_h = (multiple - h % multiple) % multiple
        pad_w = (multiple - w % multiple) % multiple
        padded = F.pad(frames.reshape(n, t * c, h, w), (0, pad_w, 0, pad_h), mode="replicate")
        out = self.network._forward_padded(padded.reshape(n, t, c, h + pad_h, w + pad_w))
        return out[:, :, : h * self.scale, : w * self.scale]


class _HalfConv2d(nn.Module):
    """A convolution with float16 weights that takes and returns float32 (Cast, Conv, Cast)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = copy.deepcopy(conv).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.half()).float()


def half_convolutions(network: nn.Module) -> nn.Module:
    """A copy of `network` whose every nn.Conv2d runs in float16; everything else stays float32.

    The convolutions are nearly all of EDVR's arithmetic. The deformable convolution's sampling
    coordinates stay float32 on purpose: float16 has a step of 0.25 px at 512 px, so sampling at
    fp16 coordinates would misplace every tap on a large frame.
    """
    network = copy.deepcopy(network)

    def replace(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(module, name, _HalfConv2d(child))
            else:
                replace(child)

    replace(network)
    return network


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_metadata(network: nn.Module, precision: str, opset: int, source: str | None = None,
                    source_path: str | os.PathLike | None = None, layout: str = "ntchw") -> dict[str, str]:
    """The key/value pairs stored in the ONNX file (ONNX allows strings only).

    `edvr enhance --model file.onnx` reads scale, num_frame and size_multiple back; the rest
    documents the graph for other runtimes and says which checkpoint it came from.
    """
    from edvr_cli import __version__

    multiple = int(network.size_multiple)
    scale = int(network.scale)
    num_frame = int(network.num_frame)
    centre = int(getattr(network, "center_frame_idx", num_frame // 2))
    if layout == "nchw":
        layout_text = (f"{INPUT_NAMES[layout]}: (N, {3 * num_frame}, H, W) float32 in [0, 1]: {num_frame} RGB "
                       f"frames stacked as channels, frame-major (vs-mlrt: clips [t-{centre} .. t+{num_frame - 1 - centre}])")
    else:
        layout_text = f"{INPUT_NAMES[layout]}: (N, {num_frame}, 3, H, W) float32 RGB in [0, 1]"
    metadata = {
        "scale": str(scale),
        "num_frame": str(num_frame),
        "center_frame_idx": str(centre),
        "size_multiple": str(multiple),
        "layout": layout,
        "input": f"{layout_text}; frame {centre} of the window is restored",
        "output": f"{OUTPUT_NAME}: (N, 3, {scale}H, {scale}W) float32 RGB, about [0, 1] (clamp it)",
        "spatial_padding": f"inside the graph: any H, W; padded to multiples of {multiple} by "
                           f"replicating the last row/column, output cropped back",
        "temporal_padding": "the caller's: at clip ends edvr enhance fills windows by "
                            "reflection_circle (BasicSR's REDS tests)",
        "precision": precision,
        "opset": str(opset),
        "producer": f"edvr {__version__} (edvr export), torch {torch.__version__}",
    }
    config = getattr(network, "config", None)
    if config is not None:
        metadata["edvr_config"] = json.dumps(config, sort_keys=True)
    if source is not None:
        metadata["source"] = str(source)
    if source_path is not None and Path(source_path).is_file():
        metadata["source_sha256"] = file_sha256(source_path)
    return metadata


@dataclass
class ExportInfo:
    """What `export_onnx` wrote."""

    path: str
    bytes: int
    opset: int
    precision: str
    metadata: dict[str, str]
    # (height, width) of each verification input -> max |ONNX Runtime - PyTorch|; empty if not verified
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def example_sizes(size_multiple: int) -> list[tuple[int, int]]:
    """Two (height, width) frame sizes for verification: one a multiple, one needing padding."""
    base = max(8, size_multiple) * 2
    return [(base + 2 * size_multiple, base + 4 * size_multiple), (base + 3, base + 2 * size_multiple + 5)]


def _example_frames(num_frame: int, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Deterministic (batch, num_frame, 3, h, w) frames in [0, 1]: a moving gradient plus noise."""
    generator = torch.Generator().manual_seed(height * 1000 + width)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    frames = [torch.stack([(xs * (1 + c) + ys + 0.05 * t) % 1 for c in range(3)]) for t in range(num_frame)]
    clean = torch.stack(frames).expand(batch, -1, -1, -1, -1)
    noise = 0.1 * torch.rand(clean.shape, generator=generator)
    return (clean * 0.9 + noise).clamp(0, 1)


def _as_layout(frames: torch.Tensor, layout: str) -> torch.Tensor:
    return frames.flatten(1, 2) if layout == "nchw" else frames


def _trace_to_onnx(module: PaddedEDVR, opset: int) -> bytes:
    height, width = example_sizes(module.size_multiple)[0]
    example = _as_layout(_example_frames(module.num_frame, height, width), module.layout)
    name = INPUT_NAMES[module.layout]
    axes = {0: "batch", 2: "height", 3: "width"} if module.layout == "nchw" else {0: "batch", 3: "height", 4: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer's notes about Python values (the DCN's diverging-offset check, which is not
        # part of the output) and the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*will be removed.*")
        try:
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[name], output_names=[OUTPUT_NAME], do_constant_folding=True,
                dynamic_axes={name: axes, OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}})
        except torch.onnx.errors.UnsupportedOperatorError as error:
            first = str(error).strip().splitlines()[0]
            raise ExportError(f"opset {opset}: {first}") from None
        except Exception as error:  # the exporter's own failures, one line rather than a traceback
            lines = str(error).strip().splitlines()
            raise ExportError(f"PyTorch's ONNX exporter failed: {lines[0] if lines else type(error).__name__}") from None
    return buffer.getvalue()


def verify_export(path: str | os.PathLike, reference: PaddedEDVR, precision: str = "fp32") -> dict[str, float]:
    """Run the ONNX file in ONNX Runtime (CPU) and `reference` in PyTorch at two frame sizes.

    Returns {"HxW": max |difference|}; raises ExportError above VERIFY_TOLERANCE[precision].
    """
    import numpy as np

    from edvr_cli.onnx.runtime import cpu_session

    session = cpu_session(path)
    diffs = {}
    for height, width in example_sizes(reference.size_multiple):
        frames = _as_layout(_example_frames(reference.num_frame, height, width), reference.layout)
        with torch.no_grad():
            expected = reference(frames).float().numpy()
        (got,) = session.run(None, {INPUT_NAMES[reference.layout]: frames.numpy()})
        if got.shape != expected.shape:
            raise ExportError(f"the exported graph returns {got.shape} for {width}x{height} frames, "
                              f"PyTorch {expected.shape}")
        diff = float(np.abs(got - expected).max())
        diffs[f"{height}x{width}"] = diff
        if not diff <= VERIFY_TOLERANCE[precision]:
            raise ExportError(f"the exported graph differs from PyTorch by {diff:.3g} at {width}x{height} "
                              f"(allowed {VERIFY_TOLERANCE[precision]:g}); nothing was written")
    return diffs


def export_onnx(network: nn.Module, path: str | os.PathLike, opset: int = MIN_OPSET, fp16: bool = False,
                source: str | None = None, source_path: str | os.PathLike | None = None,
                verify: bool = True, overwrite: bool = False, layout: str = "ntchw") -> ExportInfo:
    """Export an EDVR to an ONNX file, written to a temporary file and renamed when complete.

    Args:
        network: an EDVR with the pure-PyTorch DCN backend (torchvision's DCN does not export).
        path: the .onnx file to write.
        opset: ONNX opset, >= MIN_OPSET.
        fp16: convolutions in float16 (float16 weights, half the file); input and output stay
            float32 and the DCN's sampling stays float32 (see `half_convolutions`).
        source, source_path: the model's name and checkpoint file, recorded in the metadata
            (with the file's sha256).
        verify: compare ONNX Runtime's output with PyTorch's at two sizes before renaming
            (needs onnxruntime).
        overwrite: replace an existing file.
        layout: 'ntchw' (input `frames` (N, T, 3, H, W)) or 'nchw' (input `input` (N, 3T, H, W),
            for vs-mlrt).
    """
    import onnx

    path = Path(path)
    _check_export_request(network, path, opset, overwrite)
    network = network.eval()
    precision = "fp16" if fp16 else "fp32"
    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    module = PaddedEDVR(half_convolutions(network) if fp16 else network, layout).eval()
    graph, metadata = _checked_graph(network, module, opset, precision, source, source_path)

    diffs: dict = {}

    def write_and_verify(tmp_name: str) -> None:  # checked in ONNX Runtime before it takes the name
        onnx.save(graph, tmp_name)
        if verify:
            diffs.update(verify_export(tmp_name, module, precision))

    write_atomically(path, write_and_verify)
    return ExportInfo(str(path), path.stat().st_size, opset, precision, metadata, diffs)


def _check_export_request(network: nn.Module, path: Path, opset: int, overwrite: bool) -> None:
    """Refuse an opset, DCN backend or output path that cannot work, before anything is traced."""
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old: EDVR's deformable convolution needs GridSample, "
                          f"opset {MIN_OPSET} or later")
    from torch.onnx import _constants

    max_opset = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    if opset > max_opset:
        raise ExportError(f"--opset {opset}: this PyTorch ({torch.__version__}) exports opsets "
                          f"{MIN_OPSET}..{max_opset}")
    backends = {getattr(module, "backend", "pytorch") for module in network.modules()}
    if "torchvision" in backends:
        raise ExportError("only the pure-PyTorch DCN exports to ONNX; load the model with "
                          "dcn_backend='pytorch' (the default)")
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: exists; pass --overwrite to replace it")
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; give a file name ending in .onnx")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such folder")


def _checked_graph(network: nn.Module, module: PaddedEDVR, opset: int, precision: str, source: str | None,
                   source_path: str | os.PathLike | None):
    """The traced graph with its metadata and doc string, passed by onnx.checker; returns (graph, metadata)."""
    import onnx

    graph = onnx.load_from_string(_trace_to_onnx(module, opset))
    metadata = export_metadata(network, precision, opset, source, source_path, module.layout)
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "edvr"
    graph.doc_string = (f"EDVR x{module.scale}: {metadata['input']} -> {metadata['output']}. "
                        f"{metadata['spatial_padding']}.")
    onnx.checker.check_model(graph)
    return graph, metadata

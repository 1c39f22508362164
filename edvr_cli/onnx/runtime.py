"""An `edvr export` ONNX file as a network `edvr enhance` can drive: `--model model.onnx`.

`OnnxEDVR` is an nn.Module around an onnxruntime.InferenceSession with the attributes the
enhance pipeline reads (`scale`, `num_frame`, `size_multiple`, `scale_residual`), so tiles,
batches, --ensemble and --strength work as with the PyTorch network, and a user can check an
export end to end. It has no parameters: ModelRunner then computes in float32.

ONNX Runtime runs on the CPU, or on CUDA with `--device cuda` when the installed onnxruntime has
the CUDA provider (the `onnxruntime-gpu` package). Frames go through host memory on each call.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import EdvrError

REQUIRED_METADATA = ("scale", "num_frame", "size_multiple")


class OnnxModelError(EdvrError, ValueError):
    """An ONNX file or runtime that cannot run here; the message is one line."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError("running an ONNX model needs onnxruntime: pip install 'edvr[onnx]' "
                             "(or pip install onnxruntime)") from None
    return onnxruntime


def _session(path: str | os.PathLike, providers: list[str]):
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many as PyTorch would use
    options.log_severity_level = 3  # errors only: no notes about constant folding
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=providers)
    except Exception as error:  # InvalidProtobuf, NoSuchFile, Fail: all mean "cannot load"
        lines = str(error).strip().splitlines()
        raise OnnxModelError(f"{path}: not a loadable ONNX model ({lines[0] if lines else type(error).__name__})") from None


def cpu_session(path: str | os.PathLike):
    """An ONNX Runtime session for `path` on the CPU provider."""
    return _session(path, ["CPUExecutionProvider"])


class OnnxEDVR(nn.Module):
    """An exported EDVR run by ONNX Runtime: (n, t, 3, h, w) float in [0, 1] -> (n, 3, h*s, w*s).

    Args:
        path: an ONNX file written by `edvr export` (its metadata gives scale, num_frame, ...).
        session: an open CPU session for it (made here when None).
    """

    def __init__(self, path: str | os.PathLike, session=None):
        super().__init__()
        self.path = str(path)
        self._sessions = {"cpu": session if session is not None else cpu_session(path)}
        metadata = dict(self._sessions["cpu"].get_modelmeta().custom_metadata_map)
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise OnnxModelError(f"{path}: not an `edvr export` model (its metadata has no "
                                 f"{', '.join(missing)}); export it with `edvr export`")
        try:
            self.scale = int(metadata["scale"])
            self.num_frame = int(metadata["num_frame"])
            self.size_multiple = int(metadata["size_multiple"])
            self.center_frame_idx = int(metadata.get("center_frame_idx", self.num_frame // 2))
        except ValueError:
            raise OnnxModelError(f"{path}: metadata scale/num_frame/size_multiple are not integers") from None
        self.metadata = metadata
        inputs = self._sessions["cpu"].get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) not in (4, 5):
            raise OnnxModelError(f"{path}: expected one input, (N, T, 3, H, W) or (N, 3T, H, W), "
                                 f"got {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.flat_frames = len(inputs[0].shape) == 4  # `edvr export --layout nchw` (vs-mlrt)
        self.strength = 1.0
        # an empty buffer, so that .to(device) tells forward where the caller keeps its tensors
        self.register_buffer("device_marker", torch.empty(0), persistent=False)

    def __deepcopy__(self, memo):
        twin = OnnxEDVR(self.path, self._sessions["cpu"])  # sessions are shared: runs are thread-safe
        twin._sessions = dict(self._sessions)
        twin.strength = self.strength
        return twin.to(self.device_marker.device)

    def scale_residual(self, strength: float) -> None:
        """Apply `strength` of what the network adds to its (upsampled) centre frame, as
        `EDVR.scale_residual` does (here on the output, as the weights are in the file)."""
        self.strength *= strength

    def _session_for(self, device: torch.device):
        if device.type == "cpu":
            return self._sessions["cpu"]
        if device.type != "cuda":
            raise OnnxModelError(f"an ONNX model runs on the CPU or CUDA, not {device}")
        key = f"cuda:{device.index or 0}"
        if key not in self._sessions:
            ort = _onnxruntime()
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise OnnxModelError("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                                     "or use --device cpu")
            self._sessions[key] = _session(self.path, [("CUDAExecutionProvider", {"device_id": device.index or 0}),
                                                       "CPUExecutionProvider"])
        return self._sessions[key]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (n, num_frame, 3, h, w) float in [0, 1], any h, w (the graph pads).
        Returns (n, 3, h * scale, w * scale) float32 on the frames' device."""
        if frames.dim() != 5 or frames.shape[1] != self.num_frame or frames.shape[2] != 3:
            raise OnnxModelError(f"{Path(self.path).name} expects (n, {self.num_frame}, 3, h, w) "
                                 f"input, got {tuple(frames.shape)}")
        device = frames.device
        if _autocast_enabled(device):
            raise OnnxModelError("an ONNX model runs in the precision it was exported in: use "
                                 "--precision fp32 (and `edvr export --fp16` for fp16 convolutions)")
        session = self._session_for(device)
        array = frames.detach().to("cpu", torch.float32)
        if self.flat_frames:
            array = array.flatten(1, 2)  # (n, t * 3, h, w), frame-major
        array = array.contiguous().numpy()
        try:
            (restored,) = session.run(None, {self.input_name: array})
        except Exception as error:  # onnxruntime's Fail, InvalidArgument, RuntimeException, ...
            lines = str(error).strip().splitlines()
            first = lines[0] if lines else type(error).__name__
            if "allocate" in first.lower() or "out of memory" in first.lower():
                # the text ModelRunner recognises: it runs the windows again in smaller tiles
                raise RuntimeError(f"out of memory in ONNX Runtime ({first})") from None
            raise OnnxModelError(f"ONNX Runtime failed on {tuple(frames.shape)} input: {first}") from None
        out = torch.from_numpy(restored).to(device=device, dtype=torch.float32)
        if self.strength != 1:
            centre = frames[:, self.center_frame_idx].to(torch.float32)
            base = centre if self.scale == 1 else F.interpolate(
                centre, scale_factor=self.scale, mode="bilinear", align_corners=False)
            out = base + self.strength * (out - base)
        return out


def _autocast_enabled(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4 takes no device type
        if device.type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def load_onnx_model(path: str | os.PathLike) -> OnnxEDVR:
    """The `edvr export` file at `path`, ready for ModelRunner."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    return OnnxEDVR(path).eval()

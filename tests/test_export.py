"""`edvr export` (EDVR to ONNX) and `edvr enhance --model model.onnx` (ONNX Runtime).

Parity: ONNX Runtime (CPU, fp32) equals PyTorch to 1e-4 on real frames of the cityCC0 test clip,
at two frame sizes from one exported file, for builtin-qe, builtin-sr4 and an EDVR-M-shaped
network with TSA and predeblur. End to end: `edvr enhance --model exported.onnx` writes what the
PyTorch run writes, to within one 8-bit level.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edvr_cli.cli import main  # noqa: E402
from edvr_cli.image_io import list_image_files, read_image, write_png  # noqa: E402
from edvr_cli.model_choice import builtin_weights_path, load_enhance_model  # noqa: E402
from edvr_cli.onnx.export import MIN_OPSET, PaddedEDVR, export_onnx, half_convolutions  # noqa: E402
from edvr_cli.onnx.runtime import OnnxEDVR, cpu_session, load_onnx_model  # noqa: E402
from edvr_cli.train.degrade import bicubic_downsample  # noqa: E402
from edvr_cli.video.rgb_frames import RgbFrameReader  # noqa: E402
from models import build_model  # noqa: E402
from models.dcn import DCNv2Pack  # noqa: E402

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # fp32: ONNX Runtime vs PyTorch, on outputs in [0, 1]


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def real_frames() -> np.ndarray:
    """The 7 ground-truth frames of the cityCC0 clip, (7, 112, 160, 3) uint8."""
    with RgbFrameReader(DATA / "city_gt.mkv") as reader:
        return np.stack(list(reader))


def windows(frames: np.ndarray, num_frame: int, height: int, width: int, top: int = 0, left: int = 0,
            batch: int = 1) -> torch.Tensor:
    """(batch, num_frame, 3, height, width) float in [0, 1]: consecutive real frames, cropped."""
    crop = frames[:, top:top + height, left:left + width]
    items = [crop[start:start + num_frame] for start in range(batch)]
    return torch.from_numpy(np.stack(items)).permute(0, 1, 4, 2, 3).float().div(255).contiguous()


def onnx_run(path, frames: torch.Tensor) -> np.ndarray:
    (out,) = cpu_session(path).run(None, {"frames": frames.numpy()})
    return out


def torch_run(network, frames: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return network(frames).numpy()


def lively(network: torch.nn.Module) -> torch.nn.Module:
    """Random weights drawn with unit gain, so that what the network adds to its input is large
    (about 0.15 on average for EDVR-M, not the ~1e-5 of PyTorch's default init, which any graph
    would match to 1e-4). The offset convolutions start at zero, which would sample only whole
    pixels; random offsets of about a pixel make every GridSample interpolate."""
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=module.weight[0].numel() ** -0.5)
            torch.nn.init.zeros_(module.bias)
    for module in network.modules():
        if isinstance(module, DCNv2Pack):
            torch.nn.init.normal_(module.conv_offset.weight, std=0.01)
            torch.nn.init.uniform_(module.conv_offset.bias, -1.5, 1.5)
    return network.eval()


def edvr_m_shaped() -> torch.nn.Module:
    """EDVR-M (64 features, 5 frames, 8 deformable groups, TSA, x4) plus predeblur, random weights."""
    torch.manual_seed(0)
    return lively(build_model("edvr-m", with_predeblur=True))


@pytest.fixture(scope="module")
def frames():
    return real_frames()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """builtin-qe (through the CLI, verified there), builtin-sr4 and the EDVR-M-shaped net."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.set_num_threads(1)
    paths = {}
    result = run("export", "--model", "builtin-qe", "-o", folder / "qe.onnx", "--json")
    assert result.exit_code == 0, result.output
    paths["builtin-qe"] = (folder / "qe.onnx", json.loads(result.output))
    info = export_onnx(load_enhance_model("builtin-sr4").network, folder / "sr4.onnx", verify=False)
    paths["builtin-sr4"] = (folder / "sr4.onnx", info)
    info = export_onnx(edvr_m_shaped(), folder / "edvr_m.onnx", verify=False)
    paths["edvr-m"] = (folder / "edvr_m.onnx", info)
    return paths


# --- parity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, sizes", [
    ("builtin-qe", [(112, 160, 0, 0), (58, 90, 7, 11)]),  # the whole frame; a crop that needs padding
    ("builtin-sr4", [(48, 64, 30, 40), (30, 42, 7, 11)]),
])
def test_bundled_models_match_pytorch_at_two_sizes(exported, frames, name, sizes):
    path, _ = exported[name]
    network = load_enhance_model(name).network
    for height, width, top, left in sizes:
        x = windows(frames, network.num_frame, height, width, top, left)
        expected, got = torch_run(network, x), onnx_run(path, x)
        assert got.shape == expected.shape == (1, 3, height * network.scale, width * network.scale)
        assert np.abs(got - expected).max() < TOLERANCE, (name, height, width, np.abs(got - expected).max())


def test_edvr_m_shaped_with_tsa_and_predeblur_matches_pytorch(exported, frames):
    path, _ = exported["edvr-m"]
    network = edvr_m_shaped()
    assert network.with_tsa and network.with_predeblur and network.num_frame == 5 and network.scale == 4
    for height, width, batch in [(32, 48, 2), (22, 30, 1)]:  # batch is dynamic too
        x = windows(frames, 5, height, width, top=40, left=50, batch=batch)
        expected, got = torch_run(network, x), onnx_run(path, x)
        assert got.shape == expected.shape == (batch, 3, height * 4, width * 4)
        assert np.abs(got - expected).max() < TOLERANCE, np.abs(got - expected).max()
        base = torch.nn.functional.interpolate(x[:, 2], scale_factor=4, mode="bilinear").numpy()
        assert np.abs(expected - base).mean() > 0.05  # 500x the tolerance: far from the plain upscale


def test_a_checkpoint_file_with_hr_in_exports_through_the_cli(tmp_path, frames):
    """A checkpoint path as --model; hr_in (features at 1/4 size, size multiple 16) pads to 16."""
    from models import save_model

    torch.manual_seed(1)
    network = lively(build_model("small", num_feat=16, deformable_groups=2, num_extract_block=1,
                                 num_reconstruct_block=1, num_frame=3))
    checkpoint = tmp_path / "tiny_hr_in.pth"
    save_model(network, checkpoint)
    result = run("export", "--model", checkpoint, "-o", tmp_path / "tiny.onnx", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["metadata"]["size_multiple"] == "16" and info["metadata"]["scale"] == "1"
    assert info["metadata"]["source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for height, width in [(64, 96), (50, 70)]:  # 50x70 is padded to 64x80 inside the graph
        x = windows(frames, 3, height, width, top=10, left=20)
        expected = torch_run(network, x)
        assert np.abs(onnx_run(tmp_path / "tiny.onnx", x) - expected).max() < TOLERANCE
        assert np.abs(expected - x[:, 1].numpy()).mean() > 1e-3  # 10x the tolerance: not just the input


def test_metadata_describes_the_graph(exported):
    path, info = exported["builtin-qe"]
    model = onnx.load(path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert info["metadata"] == metadata
    sha = hashlib.sha256(builtin_weights_path("builtin-qe").read_bytes()).hexdigest()
    assert metadata["source_sha256"] == sha and metadata["source"] == "builtin-qe"
    assert (metadata["scale"], metadata["num_frame"], metadata["size_multiple"]) == ("1", "3", "4")
    assert metadata["precision"] == "fp32" and "replicat" in metadata["spatial_padding"]
    assert json.loads(metadata["edvr_config"])["num_feat"] == 16
    assert [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")] == [MIN_OPSET]
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "frames" and dims == ["batch", 3, 3, "height", "width"]
    assert set(info["max_abs_diff"]) and max(info["max_abs_diff"].values()) < TOLERANCE


def test_fp16_export_halves_the_convolutions(tmp_path, frames):
    network = load_enhance_model("builtin-sr4").network
    info = export_onnx(network, tmp_path / "sr4_fp16.onnx", fp16=True)  # verified inside
    model = onnx.load(tmp_path / "sr4_fp16.onnx")
    conv_weights = {node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    types = {init.data_type for init in model.graph.initializer if init.name in conv_weights}
    assert types == {onnx.TensorProto.FLOAT16} and info.metadata["precision"] == "fp16"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stays fp32
    x = windows(frames, network.num_frame, 40, 56)
    fp32 = torch_run(network, x)
    # ONNX Runtime's CPU provider has no fp16 convolution: it computes in float32, so only the
    # graph is checked here; PyTorch's own fp16 convolutions bound the arithmetic's error
    assert np.abs(onnx_run(tmp_path / "sr4_fp16.onnx", x) - fp32).max() < 2 / 255
    real_fp16 = torch_run(PaddedEDVR(half_convolutions(network)), x)
    assert np.abs(real_fp16 - fp32).max() < 2 / 255


def test_nchw_layout_for_vapoursynth(tmp_path, frames):
    """--layout nchw: one (N, 3T, H, W) input named `input`, as vs-mlrt stacks its clips' planes."""
    network = load_enhance_model("builtin-qe").network
    path = tmp_path / "qe_nchw.onnx"
    export_onnx(network, path, layout="nchw", verify=False)
    (graph_input,) = onnx.load(path).graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "input" and dims == ["batch", 9, "height", "width"]
    x = windows(frames, 3, 40, 54, top=20, left=30)
    (got,) = cpu_session(path).run(None, {"input": x.flatten(1, 2).numpy()})  # frame-major channels
    assert np.abs(got - torch_run(network, x)).max() < TOLERANCE
    assert np.array_equal(load_onnx_model(path)(x).numpy(), got)  # enhance --model flattens windows itself


# --- errors ------------------------------------------------------------------------------------

def test_export_errors_are_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    for args, message in [
        (["--opset", "15"], "opset 16 or later"),
        (["--model", "nothere.pth"], "nothere.pth"),
        (["--model", "edvr-m"], "--weights"),
    ]:
        result = run("export", "-o", out, *args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert result.output.startswith("Error:") and len(result.output.strip().splitlines()) == 1
    result = run("export", "-o", tmp_path / "m.pth")
    assert result.exit_code == 1 and "must end in .onnx" in result.output
    result = run("export", "--model", out, "-o", tmp_path / "again.onnx")
    assert result.exit_code == 1 and "already an ONNX file" in result.output
    assert list(tmp_path.iterdir()) == []


def test_export_keeps_an_existing_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    result = run("export", "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.output and out.read_bytes() == b"old"
    # an export that fails its check against PyTorch is not written, even with --overwrite
    monkeypatch.setattr("edvr_cli.onnx.export.VERIFY_TOLERANCE", {"fp32": -1.0})
    result = run("export", "-o", out, "--overwrite")
    assert result.exit_code == 1 and "differs from PyTorch" in result.output, result.output
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_onnx_model_errors_are_one_line(tmp_path, frames):
    clip = DATA / "city_qp37.mkv"
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX graph that `edvr export` did not write
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [tensor("x", onnx.TensorProto.FLOAT, [1])],
                                   [tensor("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), foreign)
    for model, message in [(tmp_path / "missing.onnx", "no such ONNX file"),
                           (garbage, "not a loadable ONNX model"),
                           (foreign, "not an `edvr export` model")]:
        result = run("enhance", clip, "-o", tmp_path / "out.mkv", "--model", model, "--quiet")
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.mkv").exists()


def test_onnx_model_refuses_autocast_precisions(exported, frames):
    model = load_onnx_model(exported["builtin-qe"][0])
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ValueError, match="--precision fp32"):
        model(windows(frames, 3, 16, 16))


# --- end to end: edvr enhance --model exported.onnx --------------------------------------------

def yuv420_codes(path) -> np.ndarray:
    """Every byte of the clip's yuv420p planes, as ffmpeg decodes them."""
    from edvr_cli.video import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).astype(int)


def test_enhance_with_the_onnx_file_matches_pytorch_within_one_level(exported, tmp_path):
    """Compared in the planes written: at scale 1 the change is added to the source's own yuv420p
    codes, each rounded once, so the two runtimes may differ by one code. (In RGB a luma and a
    chroma code one apart can decode two levels apart.)"""
    clip = DATA / "city_qp37.mkv"  # 7 real frames, x265 QP 37
    outputs = {}
    for name, model in [("onnx", exported["builtin-qe"][0]), ("torch", "builtin-qe")]:
        outputs[name] = tmp_path / f"{name}.mkv"
        result = run("enhance", clip, "-o", outputs[name], "--model", model, "--codec", "ffv1",
                     "--device", "cpu", "--quiet")
        assert result.exit_code == 0, result.output
    by_onnx, by_torch, source = (yuv420_codes(path) for path in (outputs["onnx"], outputs["torch"], clip))
    assert by_onnx.shape == by_torch.shape == source.shape == (7 * 112 * 160 * 3 // 2,)
    assert np.abs(by_onnx - by_torch).max() <= 1
    assert np.abs(by_torch - source).max() >= 2  # the model changed the frames, so the check means something


def test_enhance_x4_with_strength_and_tiles_matches_pytorch(exported, frames, tmp_path):
    """builtin-sr4 on real frames downscaled x4, PNG folders in and out (lossless RGB); --strength
    goes through OnnxEDVR.scale_residual, --tile through dynamic sizes."""
    (tmp_path / "in").mkdir()
    for idx, frame in enumerate(frames[:4]):
        write_png(tmp_path / "in" / f"{idx:03d}.png", bicubic_downsample(frame, 4))  # 40x28
    outputs = {}
    for name, model in [("onnx", exported["builtin-sr4"][0]), ("torch", "builtin-sr4")]:
        outputs[name] = tmp_path / name
        result = run("enhance", tmp_path / "in", "-o", outputs[name], "--model", model, "--strength", "0.5",
                     "--tile", "16", "--tile-overlap", "8", "--device", "cpu", "--quiet")
        assert result.exit_code == 0, result.output
    by_onnx, by_torch = ([read_image(p).astype(int) for p in list_image_files(outputs[name])]
                         for name in ("onnx", "torch"))
    assert len(by_onnx) == len(by_torch) == 4 and by_onnx[0].shape == (112, 160, 3)
    assert np.abs(by_torch[0] - by_onnx[1]).max() > 10  # frames differ: the check means something
    assert max(np.abs(a - b).max() for a, b in zip(by_onnx, by_torch)) <= 1


def test_onnx_runtime_out_of_memory_makes_the_runner_retry_with_smaller_tiles(exported, frames):
    from edvr_cli.enhance.inference import ModelRunner

    model = load_onnx_model(exported["builtin-qe"][0])
    real_session = model._sessions["cpu"]

    class SmallMemorySession:  # fails like ONNX Runtime on more than 48 px: whole 64x60 frames
        def run(self, outputs, feed):
            if max(next(iter(feed.values())).shape[-2:]) > 48:  # (32 px tiles + 8 px margins pass)
                raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory")
            return real_session.run(outputs, feed)

    model._sessions["cpu"] = SmallMemorySession()
    notes = []
    runner = ModelRunner(model, "cpu", tile_overlap=8, notify=notes.append)
    x = windows(frames, 3, 60, 64)
    out = runner.restore(x)
    assert runner.tile == 32 and len(notes) == 1 and "32 px tiles" in notes[0]
    model._sessions["cpu"] = real_session
    expected = ModelRunner(load_enhance_model("builtin-qe").network, "cpu", tile=32, tile_overlap=8).restore(x)
    assert np.abs(out.numpy() - expected.numpy()).max() < TOLERANCE  # the same tiles as PyTorch
    model._sessions["cpu"] = type("Broken", (), {"run": lambda self, o, f: (_ for _ in ()).throw(
        RuntimeError("[ONNXRuntimeError] : 1 : FAIL : something else\nmore"))})()
    with pytest.raises(ValueError, match="ONNX Runtime failed on .*something else$"):
        model(x)


def test_onnx_model_is_a_module_the_runner_can_move_and_copy(exported):
    import copy

    model = load_onnx_model(exported["builtin-sr4"][0])
    assert isinstance(model, OnnxEDVR) and (model.scale, model.num_frame, model.size_multiple) == (4, 5, 4)
    assert next(model.parameters(), None) is None  # ModelRunner then computes in float32
    twin = copy.deepcopy(model)
    twin.scale_residual(0.5)
    assert (twin.strength, model.strength) == (0.5, 1.0)

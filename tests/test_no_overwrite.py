"""`edvr eval` and `edvr train` never replace a file without being asked, an input never; bad
output paths (eval's reports, train's --out, export's -o) are refused before the work starts, in one
line, and a refused run leaves nothing behind."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from edvr_cli.cli import main
from edvr_cli.image_io import write_png
from tests.clips import make_clip


def frames(folder, values):
    folder.mkdir(parents=True)
    for index, value in enumerate(values):
        write_png(folder / f"{index:08d}.png", np.full((16, 16, 3), value, np.uint8))
    return folder


def edvr(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0][len("Error: "):]


def test_eval_never_writes_a_report_over_one_of_its_inputs(tmp_path):
    gt, pred = make_clip(tmp_path / "gt.mkv", num_frames=3), make_clip(tmp_path / "pred.mkv", num_frames=3)
    folder = frames(tmp_path / "frames", [10, 20, 30])
    kept = {path: path.read_bytes() for path in (gt, pred, folder / "00000001.png")}
    for args, refused in (
            (["--gt", gt, "--pred", pred, "--json", gt], gt),
            (["--gt", gt, "--pred", pred, "--csv", pred, "--overwrite"], pred),
            (["--gt", folder, "--pred", folder, "--json", folder / "00000001.png", "--overwrite"],
             folder / "00000001.png")):
        assert one_line_error(edvr("eval", *args)) == (
            f"{refused}: is one of the inputs; {args[4]} would replace it, choose another name")
    assert {path: path.read_bytes() for path in kept} == kept


def test_eval_replaces_an_existing_report_only_with_overwrite(tmp_path):
    gt = frames(tmp_path / "gt", [10, 20])
    pred = frames(tmp_path / "pred", [11, 20])
    report = tmp_path / "scores.json"
    report.write_text("the user's notes")
    assert one_line_error(edvr("eval", "--gt", gt, "--pred", pred, "--json", report)) == (
        f"{report}: already exists; pass --overwrite to replace it")
    assert report.read_text() == "the user's notes"
    done = edvr("eval", "--gt", gt, "--pred", pred, "--json", report, "--overwrite")
    assert done.exit_code == 0, done.output
    assert '"psnr"' in report.read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gt", "pred", "scores.json"]


def test_eval_checks_the_report_folders_before_scoring(tmp_path, monkeypatch):
    import edvr_cli.evaluate.scoring as scoring

    gt = frames(tmp_path / "gt", [10, 20])
    scored = []
    monkeypatch.setattr(scoring, "evaluate", lambda *args, **kwargs: scored.append(1))
    for option in ("--json", "--csv"):
        report = tmp_path / "missing" / "scores.out"
        assert one_line_error(edvr("eval", "--gt", gt, "--pred", gt, option, report)) == (
            f"{report}: its folder {tmp_path / 'missing'} does not exist")
    assert one_line_error(edvr("eval", "--gt", gt, "--pred", gt, "--json", tmp_path / "s", "--csv", tmp_path / "s")) == (
        f"{tmp_path / 's'}: named by both --json and --csv; give each its own file")
    assert scored == []


def test_train_refuses_a_folder_holding_a_run_without_resume_or_overwrite(tmp_path):
    from edvr_cli.clip_layout import clip_frames
    from edvr_cli.train.checkpointing import read_training_checkpoint
    from edvr_cli.train.runlog import read_log

    for index, frame in enumerate(clip_frames(make_clip(tmp_path / "clip.mkv", 32, 32, 4))):
        (tmp_path / "gt" / "clip").mkdir(parents=True, exist_ok=True)
        write_png(tmp_path / "gt" / "clip" / f"{index:03d}.png", frame)
    run = tmp_path / "run"

    def train(iters, *more):
        return edvr("train", "--preset", "tiny", "--gt", tmp_path / "gt", "--lq", tmp_path / "gt", "--threads", 1,
                    "--no-progress", "--cache-dir", tmp_path / "cache", "--iters", iters, "--out", run, *more)

    assert train(3).exit_code == 0
    kept = {name: (run / name).read_bytes() for name in ("last.pth", "log.jsonl")}
    assert one_line_error(train(2)) == (
        f"{run}: holds a training run already (last.pth, log.jsonl); continue it with --resume {run / 'last.pth'}, "
        f"or pass --overwrite to start a new one there, or choose another --out")
    assert {name: (run / name).read_bytes() for name in kept} == kept
    done = train(2, "--overwrite")
    assert done.exit_code == 0, done.output
    assert read_training_checkpoint(run / "last.pth")[2]["iteration"] == 2
    assert max(record.get("iter", 0) for record in read_log(run / "log.jsonl")) == 2  # a new log, not appended
    done = edvr("train", "--resume", run / "last.pth", "--iters", 3, "--no-progress")
    assert done.exit_code == 0, done.output
    (tmp_path / "a_file").write_text("the user's")
    assert one_line_error(train(2, "--out", tmp_path / "a_file")) == (
        f"{tmp_path / 'a_file'}: is a file; --out names the run's folder")
    assert (tmp_path / "a_file").read_text() == "the user's"


def test_export_to_a_path_ending_in_a_slash_is_refused_not_written_as_a_file(tmp_path):
    assert one_line_error(edvr("export", "-o", f"{tmp_path}/x.onnx/")) == (
        f"{tmp_path}/x.onnx/: names a folder; name the .onnx file to write, e.g. {tmp_path / 'x.onnx' / 'model.onnx'}")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_batch_leaves_no_empty_output_folder(tmp_path):
    clip = make_clip(tmp_path / "a.mkv", num_frames=3)
    (tmp_path / "b").mkdir()
    make_clip(tmp_path / "b" / "a.mkv", num_frames=3)
    done = edvr("enhance", clip, tmp_path / "b" / "a.mkv", "-o", f"{tmp_path}/new/out/")
    assert done.exit_code != 0 and "would both be written to" in done.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.mkv", "b"]


def test_a_damaged_png_is_one_line_without_advice_to_install_plugins(tmp_path):
    folder = frames(tmp_path / "frames", [10, 20])
    (folder / "00000001.png").write_bytes(b"not an image at all")
    assert one_line_error(edvr("eval", "--gt", folder, "--pred", folder)) == (
        f"{folder / '00000001.png'}: cannot read image (damaged, or not the image format its name says)")


def test_enhance_into_a_suffix_that_is_no_video_container_is_refused_before_any_work(tmp_path):
    # before the input is probed, the model loaded (the file named is no model) or Ray joined (nothing listens)
    clip = make_clip(tmp_path / "in.mkv", num_frames=3)
    for options in ([], ["--ray", "ray://127.0.0.1:9"]):
        for name in ("x.pth", "x.xyz"):
            output = tmp_path / name
            assert one_line_error(edvr("enhance", clip, "-o", output, "--model", tmp_path / "no.pth", *options)) == (
                f"{output}: ffmpeg cannot write a video into a {output.suffix} file; name a video file such as .mkv, "
                f".mp4, .mov, .webm or .avi, or a folder (-o {tmp_path / 'x'}/) for PNG frames")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.mkv"]

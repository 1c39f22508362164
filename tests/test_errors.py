"""One error base: every error a user can fix is an `EdvrError` (shown as one line); anything else
-- a bug, a bare ValueError included -- keeps its traceback in every command."""

import importlib
import inspect
import pkgutil

import pytest
from click.testing import CliRunner

import edvr_cli
import models
from edvr_cli.cli import main
from models.errors import EdvrError



def _error_classes():
    for package in (edvr_cli, models):
        for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module_info.name.endswith("__main__"):
                continue
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__:
                    yield name, value


def test_every_user_error_derives_from_edvr_error_and_keeps_its_old_base():
    classes = dict(_error_classes())
    assert {"VideoError", "EnhanceError", "OutputPathError", "InferenceError", "CheckpointError",
            "FrameSourceError", "ImageFolderError", "DegradeError", "ConfigError", "DataError",
            "TrainingError", "ClipLayoutError", "DownloadError", "UnknownModelError"} <= set(classes)
    for name, cls in classes.items():
        if cls is EdvrError or not name.endswith("Error"):
            continue
        assert issubclass(cls, EdvrError), name
    # code that caught ValueError / RuntimeError before still catches them
    assert issubclass(classes["CheckpointError"], ValueError)
    assert issubclass(classes["TrainingError"], RuntimeError)


class _UserError(EdvrError):
    pass


def _patch_commands(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("edvr_cli.evaluate.scoring.evaluate", fail)
    monkeypatch.setattr("edvr_cli.train.loop.train", fail)
    monkeypatch.setattr("edvr_cli.enhance.enhance", fail)


def _invocations(tmp_path):
    (tmp_path / "clip").mkdir()
    return [["eval", "--gt", str(tmp_path / "clip"), "--pred", str(tmp_path / "clip")],
            ["train", "--preset", "tiny", "--gt", str(tmp_path / "clip"), "--degrade", "compress",
             "--out", str(tmp_path / "run")],
            ["enhance", str(tmp_path / "clip"), "-o", str(tmp_path / "out.mp4"), "--quiet"]]


def test_a_user_error_is_one_line_in_every_command(tmp_path, monkeypatch):
    _patch_commands(monkeypatch, _UserError("give --gt a folder of frames"))
    for args in _invocations(tmp_path):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.strip().splitlines()[-1] == "Error: give --gt a folder of frames", args


@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("a bug")])
def test_a_bug_keeps_its_traceback_in_every_command(tmp_path, monkeypatch, bug):
    _patch_commands(monkeypatch, bug)
    for args in _invocations(tmp_path):
        result = CliRunner().invoke(main, args)
        assert result.exception is bug, (args, result.output)
        assert "Error: a bug" not in result.output

"""The model zoo: registry data, hash-checked downloads from a local HTTP server, `edvr models`.

No test touches the internet: checkpoints are served by an http.server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from click.testing import CliRunner

from edvr_cli.cli import main
from models import PRESETS, build_model
from models import zoo
from models.download import (ChecksumError, DownloadError, cache_path, default_cache_dir,
                             resolve_checkpoint)
from models.zoo import MODEL_ZOO, TASKS, PublishedScore, UnknownModelError, ZooEntry, find_model


def checkpoint_bytes(layout: str) -> bytes:
    """A tiny random state dict saved in the BasicSR or MMEditing layout."""
    generator = torch.Generator().manual_seed(0 if layout == "basicsr" else 1)
    state = {"conv_first.weight": torch.randn(4, 3, 3, 3, generator=generator),
             "conv_first.bias": torch.randn(4, generator=generator)}
    if layout == "basicsr":
        checkpoint = {"params": state}
    else:
        checkpoint = {"state_dict": {f"generator.{key}": value for key, value in state.items()}}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


class Server:
    """Routes: path -> (body, mode); mode "ok", "short" (Content-Length too large, then close) or "html"."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, mode = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if mode == "html" else "application/octet-stream")
                self.send_header("Content-Length", str(len(body) + (1000 if mode == "short" else 0)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


def entry_for(name: str, url: str, body: bytes, sha256: str | None = None, layout="basicsr") -> ZooEntry:
    """A registry entry for a served test file; `sha256` defaults to the 8-digit prefix."""
    digest = hashlib.sha256(body).hexdigest()
    return ZooEntry(
        name=name, task="sr-x4", publisher="test", url=url, file_name=f"{name}-{digest[:8]}.pth",
        sha256=sha256 if sha256 is not None else digest[:8], preset="edvr-m", num_frame=5, scale=4,
        hr_in=False, with_predeblur=False, with_tsa=True,
        scores=(PublishedScore("REDS4", "RGB", 30.0, 0.86),), test_padding="reflection_circle",
        source_doc="tests/test_zoo.py", layout=layout)


def serve(server: Server, name: str, layout: str, mode: str = "ok", **kwargs) -> tuple[ZooEntry, bytes]:
    body = checkpoint_bytes(layout)
    server.routes[f"/{name}.pth"] = (body, mode)
    return entry_for(name, f"{server.base}/{name}.pth", body, layout=layout, **kwargs), body


# --- downloads -------------------------------------------------------------------------------

def test_download_basicsr_layout_with_full_hash_lands_in_cache(server, tmp_path):
    entry, body = serve(server, "tiny_basicsr", "basicsr")
    entry = dataclasses.replace(entry, sha256=hashlib.sha256(body).hexdigest())  # 64 digits
    cache = tmp_path / "cache"

    path = resolve_checkpoint("tiny_basicsr", cache_dir=cache, progress=True, registry=(entry,))

    assert path == cache / entry.file_name
    assert path.read_bytes() == body
    assert sorted(p.name for p in cache.iterdir()) == [entry.file_name]  # no temp file left
    loaded = torch.load(path, weights_only=True)
    expected = torch.load(io.BytesIO(body), weights_only=True)
    assert torch.equal(loaded["params"]["conv_first.weight"], expected["params"]["conv_first.weight"])
    assert server.requests == ["/tiny_basicsr.pth"]


def test_cache_hit_makes_no_second_request(server, tmp_path):
    entry, body = serve(server, "tiny_mmedit", "mmediting")
    registry = (entry,)

    first = resolve_checkpoint("tiny_mmedit", cache_dir=tmp_path, progress=False, registry=registry)
    second = resolve_checkpoint("TINY_MMEDIT", cache_dir=tmp_path, progress=False, registry=registry)

    assert first == second == tmp_path / entry.file_name
    assert server.requests == ["/tiny_mmedit.pth"]
    state = torch.load(second, weights_only=True)["state_dict"]
    assert sorted(state) == ["generator.conv_first.bias", "generator.conv_first.weight"]


def test_wrong_hash_deletes_the_download(server, tmp_path):
    entry, body = serve(server, "tiny_bad", "basicsr")
    actual = hashlib.sha256(body).hexdigest()
    wrong = ("1" if actual[0] == "0" else "0") + actual[1:8]
    entry = dataclasses.replace(entry, sha256=wrong)

    with pytest.raises(ChecksumError) as raised:
        resolve_checkpoint("tiny_bad", cache_dir=tmp_path, progress=False, registry=(entry,))

    message = str(raised.value)
    assert wrong in message and actual[:16] in message and "deleted" in message
    assert list(tmp_path.iterdir()) == []


def test_server_down_names_url_and_cache_path(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gone.pth"
    entry = entry_for("gone", url, b"never served")

    with pytest.raises(DownloadError) as raised:
        resolve_checkpoint("gone", cache_dir=tmp_path, progress=False, registry=(entry,))

    message = str(raised.value)
    assert url in message
    assert str(tmp_path / entry.file_name) in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_leaves_no_file(server, tmp_path):
    entry, body = serve(server, "tiny_short", "basicsr", mode="short")

    with pytest.raises(DownloadError) as raised:
        resolve_checkpoint("tiny_short", cache_dir=tmp_path, progress=False, registry=(entry,))

    assert f"stopped after {len(body)} of {len(body) + 1000} bytes" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_web_page_instead_of_file_asks_for_a_manual_download(server, tmp_path):
    entry, _ = serve(server, "tiny_page", "basicsr", mode="html")
    entry = dataclasses.replace(entry, manual_url="https://example.org/folder")

    with pytest.raises(DownloadError) as raised:
        resolve_checkpoint("tiny_page", cache_dir=tmp_path, progress=False, registry=(entry,))

    assert "web page" in str(raised.value) and "https://example.org/folder" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_one_line(server, tmp_path):
    entry = entry_for("missing", f"{server.base}/missing.pth", b"x")

    with pytest.raises(DownloadError, match="HTTP 404"):
        resolve_checkpoint("missing", cache_dir=tmp_path, progress=False, registry=(entry,))
    assert list(tmp_path.iterdir()) == []


def test_cached_file_with_wrong_hash_is_reported_and_kept(tmp_path):
    entry = entry_for("hand_placed", "http://127.0.0.1:9/unused.pth", b"the published bytes")
    placed = cache_path(entry, tmp_path)
    placed.write_bytes(b"something else")

    with pytest.raises(ChecksumError, match="delete it"):
        resolve_checkpoint("hand_placed", cache_dir=tmp_path, progress=False, registry=(entry,))
    assert placed.read_bytes() == b"something else"


# --- names and paths -------------------------------------------------------------------------

def test_existing_path_is_returned_as_is(tmp_path):
    weights = tmp_path / "EDVR_M_x4_SR_REDS_official"  # even when it looks like a registry name
    weights.write_bytes(b"")
    assert resolve_checkpoint(str(weights), cache_dir=tmp_path / "cache") == weights
    assert not (tmp_path / "cache").exists()


def test_unknown_name_lists_close_names(tmp_path):
    with pytest.raises(UnknownModelError) as raised:
        resolve_checkpoint("EDVR_M_x4_SR_RED", cache_dir=tmp_path)
    assert "Did you mean: EDVR_M_x4_SR_REDS_official" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("EDVR_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "edvr"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edvr"
    monkeypatch.setenv("EDVR_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    entry = MODEL_ZOO[0]
    assert cache_path(entry, tmp_path / "arg") == tmp_path / "arg" / entry.file_name


# --- the registry itself -----------------------------------------------------------------------

def test_registry_entries_are_consistent():
    names = [entry.name for entry in MODEL_ZOO]
    assert len(names) == len(set(name.casefold() for name in names))
    for entry in MODEL_ZOO:
        assert entry.file_name.endswith(f"-{entry.sha256}.pth"), entry.name
        assert len(entry.sha256) in (8, 64) and int(entry.sha256, 16) >= 0
        assert entry.url.startswith("https://")
        assert entry.preset in PRESETS and entry.task in TASKS and entry.source_doc
        assert entry.scale == (1 if entry.hr_in else 4)
        assert entry.test_padding in ("reflection_circle", "replicate")
        assert find_model(entry.name) is entry


def test_seed_checkpoints_are_registered_with_their_published_scores():
    base = "https://download.openmmlab.com/mmediting/restorers/edvr/"
    wotsa = find_model("edvrm_wotsa_x4_8x4_600k_reds")
    tsa = find_model("edvrm_x4_8x4_600k_reds")
    assert wotsa.url == base + "edvrm_wotsa_x4_8x4_600k_reds_20200522-0570e567.pth"
    assert tsa.url == base + "edvrm_x4_8x4_600k_reds_20200622-ba4a43e4.pth"
    assert [str(score) for score in wotsa.scores] == ["REDS4 RGB 30.3430/0.8664"]
    assert [str(score) for score in tsa.scores] == ["REDS4 RGB 30.4194/0.8684"]
    assert (wotsa.with_tsa, tsa.with_tsa) == (False, True)
    assert tsa.model_overrides() == dict(num_frame=5, scale=4, hr_in=False, with_predeblur=False,
                                         with_tsa=True)


def test_every_entry_builds_and_standard_configs_match_published_parameter_counts():
    # Published counts (BasicSR): EDVR-M 3,300,131 and EDVR-L 20,633,827 (x4, 5 frames, TSA).
    published = {"edvr-m": 3_300_131, "edvr-l": 20_633_827}
    checked = 0
    for entry in MODEL_ZOO:
        model = build_model(entry.preset, **entry.model_overrides())
        assert (model.scale, model.num_frame) == (entry.scale, entry.num_frame)
        standard = (entry.num_frame, entry.scale, entry.with_tsa, entry.with_predeblur) == (5, 4, True, False)
        if standard:
            assert sum(p.numel() for p in model.parameters()) == published[entry.preset], entry.name
            checked += 1
    assert checked == 5


# --- `edvr models` ---------------------------------------------------------------------------

def test_models_command_lists_the_registry(tmp_path):
    result = CliRunner().invoke(main, ["models", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for entry in MODEL_ZOO:
        assert entry.name in result.output
    assert "REDS4 RGB 31.09/0.8800" in result.output
    assert str(tmp_path) in result.output

    listed = json.loads(CliRunner().invoke(main, ["models", "--json", "--cache-dir", str(tmp_path)]).output)
    assert [row["name"] for row in listed["models"]] == [entry.name for entry in MODEL_ZOO]
    assert not any(row["cached"] for row in listed["models"])
    # the bundled weights come first, marked as such, with their own architecture
    lines = result.output.splitlines()
    assert lines[1].split()[:5] == ["builtin-qe", "qe-x265-qp37", "x1", "3", "0.3"]
    assert lines[2].split()[:5] == ["builtin-sr4", "sr-x4", "x4", "5", "1.6"]
    assert lines[1].endswith("bundled") and "+0.175 dB vs QP37 input" in lines[1]
    assert [(row["name"], row["scale"]) for row in listed["bundled"]] == [("builtin-qe", 1), ("builtin-sr4", 4)]


def test_models_command_shows_a_download_as_cached(server, tmp_path, monkeypatch):
    entry, body = serve(server, "tiny_listed", "basicsr")
    monkeypatch.setattr(zoo, "MODEL_ZOO", MODEL_ZOO + (entry,))
    resolve_checkpoint("tiny_listed", cache_dir=tmp_path, progress=False, registry=zoo.MODEL_ZOO)

    result = CliRunner().invoke(main, ["models", "--json", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["models"]}
    assert rows["tiny_listed"]["cached"] is True
    assert rows["tiny_listed"]["path"] == str(tmp_path / entry.file_name)
    assert rows["tiny_listed"]["cached_mb"] == round(len(body) / 1e6, 1)
    assert rows["EDVR_M_x4_SR_REDS_official"]["cached"] is False

    table = CliRunner().invoke(main, ["models", "--cache-dir", str(tmp_path)]).output
    row = next(line for line in table.splitlines() if line.startswith("tiny_listed"))
    assert row.split()[-1] == "yes"

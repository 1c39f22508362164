"""`edvr models`: list the named checkpoints, their published scores and whether they are cached."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from edvr_cli.commands.failures import reported


def _rows(registry, cache_dir: Path) -> list[dict]:
    from models.download import cache_path

    rows = []
    for entry in registry:
        row = dataclasses.asdict(entry)
        row["model_overrides"] = entry.model_overrides()
        row["published"] = [str(score) for score in entry.scores]  # as printed by the publisher
        row["path"] = str(cache_path(entry, cache_dir))
        row["cached"] = Path(row["path"]).is_file()
        # MB of the file on disk; the registry's size_mb is the publisher's figure, when stated.
        row["cached_mb"] = round(Path(row["path"]).stat().st_size / 1e6, 1) if row["cached"] else None
        rows.append(row)
    return rows


def _bundled_rows() -> list[dict]:
    """The weights shipped in models/weights, with what the model card measured."""
    from edvr_cli.model_choice import BUILTIN_SUMMARY, builtin_weights_path, bundled_models
    from models import load_model

    rows = []
    for name in bundled_models():
        path = builtin_weights_path(name)
        network = load_model(path)
        task, result = BUILTIN_SUMMARY[name]
        rows.append({"name": name, "task": task, "scale": network.scale, "num_frame": network.num_frame,
                     "size_mb": round(path.stat().st_size / 1e6, 1), "result": result, "path": str(path)})
    return rows


def _table(rows: list[dict], bundled: list[dict]) -> str:
    header = ("NAME", "TASK", "SCALE", "FRAMES", "SIZE_MB", "PUBLISHED", "CACHED")
    lines = [header]
    for row in bundled:
        lines.append((row["name"], row["task"], f"x{row['scale']}", str(row["num_frame"]), f"{row['size_mb']:.1f}",
                      row["result"], "bundled"))
    for row in rows:
        published = row["published"][0] if row["published"] else "-"
        size_mb = row["cached_mb"] if row["cached_mb"] is not None else row["size_mb"]
        size = "-" if size_mb is None else f"{size_mb:.1f}"
        lines.append((row["name"], row["task"], f"x{row['scale']}", str(row["num_frame"]), size,
                      published, "yes" if row["cached"] else "no"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


@click.command(name="models", short_help="List the named EDVR checkpoints (bundled and published).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the registry as JSON (every field, plus 'cached' and 'path') for scripts.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder to check. Default: $EDVR_CACHE_DIR, else $XDG_CACHE_HOME/edvr, "
                   "else ~/.cache/edvr.")
def command(as_json: bool, cache_dir: Path | None) -> None:
    """List the checkpoints `edvr enhance --model NAME` and `--init NAME` accept.

    The bundled models (shipped with edvr, no download) come first, with the gain this project
    measured on held-out clips (models/weights/README.md). The other scores are the publishers'
    own (PSNR dB / SSIM, on the dataset and channel shown).
    A name is downloaded into the cache folder on first use and checked against its SHA-256;
    "cached" only says the file is there.
    """
    from models import zoo
    from models.download import default_cache_dir

    with reported("the list was not printed"):
        folder = cache_dir.expanduser() if cache_dir is not None else default_cache_dir()
        rows, bundled = _rows(zoo.MODEL_ZOO, folder), _bundled_rows()
    if as_json:
        click.echo(json.dumps({"cache_dir": str(folder), "bundled": bundled, "models": rows}, indent=2))
        return
    click.echo(_table(rows, bundled))
    click.echo(f"\nCache folder: {folder}")
    click.echo("Use a name with `edvr enhance --model NAME`; sources and notes: `edvr models --json`.")

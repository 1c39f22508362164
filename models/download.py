"""Turn a model name or a path into a checkpoint file on disk, downloading it when needed.

Downloading only: nothing here unpickles a file. Loading is `models.load_model(path)`,
which reads weights only.

    resolve_checkpoint("EDVR_M_x4_SR_REDS_official")  # -> ~/.cache/edvr/EDVR_M_x4_SR_REDS_official-32075921.pth
    resolve_checkpoint("my_run/net_g_latest.pth")      # -> the same path, untouched
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from models.errors import EdvrError
from models.zoo import MODEL_ZOO, UnknownModelError, ZooEntry, close_names, find_model

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30  # per socket operation, not for the whole transfer


class DownloadError(EdvrError, ValueError):
    """A checkpoint could not be fetched; the message says what to fetch by hand and where to put it."""


class ChecksumError(DownloadError):
    """A file's SHA-256 does not match the registry."""


def default_cache_dir() -> Path:
    """$EDVR_CACHE_DIR, else $XDG_CACHE_HOME/edvr, else ~/.cache/edvr."""
    if os.environ.get("EDVR_CACHE_DIR"):
        return Path(os.environ["EDVR_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edvr"


def cache_path(entry: ZooEntry, cache_dir: str | Path | None = None) -> Path:
    """Where `entry`'s file lives once downloaded."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / entry.file_name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_matches(digest: str, expected: str) -> bool:
    """Full digest comparison when `expected` has 64 digits, prefix comparison otherwise."""
    return digest.startswith(expected.lower())


def _by_hand(entry: ZooEntry, destination: Path) -> str:
    page = f" (or from {entry.manual_url})" if entry.manual_url else ""
    return (f"Download {entry.url}{page} by hand and save it as {destination}, "
            f"or pass the file's path instead of the name.")


def download_checkpoint(entry: ZooEntry, destination: Path, progress: bool = True) -> Path:
    """Fetch `entry.url` into `destination`, checking its size and SHA-256.

    The bytes go to a temporary file beside `destination`, which is `os.replace`d into place
    only after the hash matches, so an interrupted or wrong download never leaves a file under
    the final name, and no temporary file survives a failure.

    Args:
        entry: the registry entry (url, sha256, file name).
        destination: final path of the file.
        progress: show a tqdm progress bar on stderr.

    Raises:
        DownloadError: no connection, HTTP error, short transfer, or a web page instead of a file.
        ChecksumError: the downloaded bytes do not match `entry.sha256` (the file is deleted).
    """
    handle, temp_path = _temp_file_beside(destination)
    try:
        with os.fdopen(handle, "wb") as out:
            actual, received, expected_bytes = _fetch_into(out, entry, destination, progress)
        _check_download(entry, destination, actual, received, expected_bytes)
        os.replace(temp_path, destination)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return destination


def _temp_file_beside(destination: Path) -> tuple[int, Path]:
    """A new .part file in the destination's folder (created), so the final os.replace is atomic."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                             suffix=".part")
    except OSError as error:
        raise DownloadError(f"cannot write to the cache folder {destination.parent}: "
                            f"{error.strerror or error}. Set EDVR_CACHE_DIR or --cache-dir to a "
                            f"writable folder.") from None
    return handle, Path(temp_name)


def _fetch_into(out, entry: ZooEntry, destination: Path, progress: bool) -> tuple[str, int, int | None]:
    """GET `entry.url` into `out`, turning HTTP and network failures into one-line DownloadErrors."""
    request = urllib.request.Request(entry.url, headers={"User-Agent": "edvr-cli"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return _copy_response(response, out, entry, destination, progress)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download {entry.name}: {entry.url} answered HTTP "
                            f"{error.code} {error.reason}. " + _by_hand(entry, destination)) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not download {entry.name} from {entry.url} ({reason}). "
                            + _by_hand(entry, destination)) from None


def _copy_response(response, out, entry: ZooEntry, destination: Path,
                   progress: bool) -> tuple[str, int, int | None]:
    """Copy and hash the body in one pass; returns (sha256, bytes received, Content-Length or None)."""
    from tqdm import tqdm  # only needed when something is downloaded

    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/html"):
        raise DownloadError(
            f"{entry.url} answered with a web page, not the checkpoint (Google Drive "
            f"does this for large files or when its download quota is used up). "
            + _by_hand(entry, destination))
    length = response.headers.get("Content-Length")
    expected_bytes = int(length) if length and length.isdigit() else None
    digest = hashlib.sha256()
    received = 0
    with tqdm(total=expected_bytes, unit="B", unit_scale=True, unit_divisor=1024,
              desc=entry.file_name, disable=not progress, leave=False) as bar:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), received, expected_bytes


def _check_download(entry: ZooEntry, destination: Path, actual: str, received: int,
                    expected_bytes: int | None) -> None:
    """Refuse a short transfer or a wrong SHA-256 before the file may take its final name."""
    # http.client does not raise when the server closes early; compare with Content-Length.
    if expected_bytes is not None and received != expected_bytes:
        raise DownloadError(f"download of {entry.url} stopped after {received} of "
                            f"{expected_bytes} bytes; nothing was kept. Try again. "
                            + _by_hand(entry, destination))
    if not hash_matches(actual, entry.sha256):
        raise ChecksumError(f"downloaded {entry.url} but its SHA-256 {actual[:16]}... does not "
                            f"match the expected {entry.sha256}; the file was deleted. "
                            f"If this repeats, the published file has changed: report it.")


def resolve_checkpoint(name_or_path: str | Path, cache_dir: str | Path | None = None,
                       progress: bool = True, registry: tuple[ZooEntry, ...] = MODEL_ZOO) -> Path:
    """A checkpoint path from an existing path or a registry name.

    Args:
        name_or_path: a path that exists (returned as is) or a name from `registry`
            (exact, or case-insensitive when unambiguous).
        cache_dir: cache folder; default `default_cache_dir()`.
        progress: show a progress bar while downloading.
        registry: entries to look names up in (tests inject their own).

    Raises:
        UnknownModelError: neither a file nor a name; the message lists close names.
        DownloadError, ChecksumError: see `download_checkpoint`; a cached file whose hash does
            not match raises ChecksumError and is left in place for the user to inspect.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    entry = find_model(str(name_or_path), registry)
    if entry is None:
        suggestions = close_names(str(name_or_path), registry)
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        raise UnknownModelError(f"{str(name_or_path)!r} is neither an existing file nor a model "
                                f"name.{hint} Run `edvr models` for the list.")
    destination = cache_path(entry, cache_dir)
    if destination.is_file():
        actual = sha256_of(destination)
        if not hash_matches(actual, entry.sha256):
            raise ChecksumError(f"cached file {destination} has SHA-256 {actual[:16]}..., expected "
                                f"{entry.sha256}: delete it to download {entry.name} again.")
        return destination
    return download_checkpoint(entry, destination, progress=progress)

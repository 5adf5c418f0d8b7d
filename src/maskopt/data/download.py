"""Resumable, checksum-verified downloads and safe archive extraction.

Used by the `download` stage for COCO 2017. A transfer goes to ``<file>.part`` and
continues from where it stopped (HTTP Range) when restarted; the finished file
is checked against the server's size and, where known, its MD5, before it is
renamed into place. Archives are extracted member by member, refusing any
member that would land outside the target folder.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from maskopt.errors import MaskoptError

CHUNK = 1 << 20


class TransientDownloadError(MaskoptError):
    """A failure worth retrying: no connection, a server error (5xx), a cut transfer."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stamp(path: Path, md5: str) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5}


def _verified(path: Path, md5: str) -> bool:
    """Whether ``path`` has ``md5``: from the record of an earlier check when the file's
    size and modification time are unchanged (re-hashing 18 GB takes minutes), else by
    hashing it and recording the result."""
    record = _record_path(path)
    try:
        if json.loads(record.read_text()) == _stamp(path, md5):
            return True
    except (OSError, ValueError):
        pass
    if _md5(path) != md5:
        return False
    record.write_text(json.dumps(_stamp(path, md5)))
    return True


def _total_size(response, already: int) -> int | None:
    if response.status == 206:  # Content-Range: bytes START-END/TOTAL
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def download_file(url: str, dest: str | Path, md5: str | None = None,
                  timeout: float = 60.0, show_progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming a partial transfer; verify; return ``dest``.

    A file already at ``dest`` is kept when its checksum (if known) matches; a
    verified file is not hashed again while its size and time stamp are unchanged. A
    size or checksum mismatch deletes the partial file and raises MaskoptError, so
    the next attempt starts clean.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if md5 is None or _verified(dest, md5):
            return dest
        dest.unlink()  # a stale or damaged copy: fetch again
        _record_path(dest).unlink(missing_ok=True)
    part = dest.with_name(dest.name + ".part")
    already = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={already}-"} if already else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and already:  # the partial file is already complete
            response = None
        else:
            error = TransientDownloadError if exc.code >= 500 else MaskoptError
            raise error(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TransientDownloadError(f"{url}: cannot connect ({exc})") from exc

    total = already
    if response is not None:
        with response:
            if response.status != 206:  # server ignored Range: start over
                already = 0
            total = _total_size(response, already)
            mode = "ab" if already else "wb"
            with part.open(mode) as out, tqdm(
                total=total, initial=already, unit="B", unit_scale=True,
                desc=dest.name, disable=not show_progress, leave=False,
            ) as bar:
                try:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
                except (OSError, http.client.HTTPException) as exc:
                    raise TransientDownloadError(
                        f"{url}: transfer interrupted after {part.stat().st_size} bytes "
                        f"({exc}); run again to resume"
                    ) from exc
    got = part.stat().st_size
    if total is not None and got != total:
        raise TransientDownloadError(
            f"{url}: transfer incomplete ({got} of {total} bytes); run again to resume"
        )
    if md5 is not None and (actual := _md5(part)) != md5:
        part.unlink()
        raise MaskoptError(f"{dest}: checksum mismatch (md5 {actual}, expected {md5}); "
                           "the corrupted file was removed, run again to fetch it anew")
    os.replace(part, dest)
    if md5 is not None:  # hashed just above: record it so reruns skip the hash
        _record_path(dest).write_text(json.dumps(_stamp(dest, md5)))
    return dest


def download_with_retries(url: str, dest: str | Path, attempts: int = 4,
                          backoff: float = 1.0, **kwargs) -> Path:
    """``download_file``, retried with exponential backoff (``backoff`` × 1, 2, 4 … s) on
    transient failures; a partial transfer resumes on each retry."""
    for attempt in range(attempts):
        try:
            return download_file(url, dest, **kwargs)
        except TransientDownloadError:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * 2 ** attempt)
    raise AssertionError("unreachable")


def download_many(jobs: list[tuple[str, Path]], workers: int = 8, desc: str = "download",
                  **kwargs) -> None:
    """Fetch many small files (url, destination) a few at a time, each with retries,
    under one progress bar; the first lasting failure stops the lot with its error."""
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="file") as bar:
        futures = [pool.submit(download_with_retries, url, dest, show_progress=False, **kwargs)
                   for url, dest in jobs]
        try:
            for future in as_completed(futures):
                future.result()
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _member_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(root):
        raise MaskoptError(f"archive member {name!r} would be written outside {root}; refused")
    return target


def safe_extract(archive: str | Path, target_dir: str | Path, show_progress: bool = True) -> None:
    """Extract a zip archive into ``target_dir``, refusing unsafe members.

    Every member is checked before anything is written, so a malicious archive
    leaves the target folder as it was. Symbolic links are refused as well. A marker
    file records a completed extraction, so a rerun skips it.
    """
    archive, root = Path(archive), Path(target_dir).resolve()
    marker = root / f".extracted-{archive.name}"
    if marker.exists():
        return
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _member_target(root, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise MaskoptError(f"{archive}: member {info.filename!r} is a symbolic link; "
                                       "refused")
            root.mkdir(parents=True, exist_ok=True)
            for info in tqdm(members, desc=f"extract {archive.name}", unit="file",
                             disable=not show_progress, leave=False):
                target = _member_target(root, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                try:
                    with zf.open(info) as src, tmp.open("wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                except (zlib.error, zipfile.BadZipFile, EOFError) as exc:
                    tmp.unlink(missing_ok=True)
                    raise MaskoptError(f"{archive}: member {info.filename!r} is corrupt "
                                       f"({type(exc).__name__}: {exc}); delete the archive "
                                       "and run again to fetch it anew") from None
                os.replace(tmp, target)
    except zipfile.BadZipFile as exc:
        raise MaskoptError(f"{archive}: not a valid zip archive ({exc})") from exc
    marker.touch()

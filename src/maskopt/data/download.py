"""Resumable, checksum-verified downloads and safe archive extraction.

Used by the `download` stage for COCO 2017, whose image archive is 18 GB: nothing
here ever deletes a file that was verified, and every failure is one line that says
what to do. A transfer goes to ``<file>.part`` and continues from where it stopped
(HTTP Range); the finished file is checked against the server's size and, where
known, its MD5 before it is renamed into place. A download that fails its check is
moved aside to ``<file>.corrupt`` until a good copy replaces it. Archives are
extracted member by member, refusing any member that would land outside the target
folder; a member already there at its full size is not written again.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from maskopt.core.errors import MaskoptError

CHUNK = 1 << 20
SPACE_HEADROOM = 64 << 20  # left free beyond what a transfer or an extraction writes
# extraction junk of archives made on macOS: never written
JUNK = ("__MACOSX", ".DS_Store")


class TransientDownloadError(MaskoptError):
    """A failure worth retrying: no connection, a server error (5xx), a cut transfer."""


def warn(message: str) -> None:
    """A warning on stderr as one plain line (``warnings.warn`` prints a source line)."""
    tqdm.write(f"warning: {message}", file=sys.stderr)


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when they do not fit."""
    free = free_bytes(folder)
    if needed + SPACE_HEADROOM > free:
        raise MaskoptError(f"{what} needs {_size(needed + SPACE_HEADROOM)} free in {folder}, "
                           f"but only {_size(free)} is free; free some space and run again")


def write_error(path: Path, exc: OSError, what_now: str) -> MaskoptError:
    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "error"
    return MaskoptError(f"{path}: cannot write ({code}: {exc.strerror or exc}); {what_now}")


def _md5(path: Path, show_progress: bool = False) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                    desc=f"verify {path.name}", disable=not show_progress,
                                    leave=False) as bar:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _record(path: Path, md5: str) -> None:
    """Remember ``path``'s MD5 for as long as its size and modification time stay."""
    stat = path.stat()
    _record_path(path).write_text(json.dumps(
        {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5}))


def recorded_md5(path: Path, unchanged: bool = True) -> str | None:
    """The MD5 an earlier check found for ``path``, if the file is unchanged since (its
    size and time stamp). ``unchanged=False``: whatever MD5 was recorded for a file of
    its size, e.g. after a copy or a restore changed its time stamp."""
    try:
        record = json.loads(_record_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if record.get("size") == stat.st_size and (
            not unchanged or record.get("mtime_ns") == stat.st_mtime_ns):
        return record.get("md5")
    return None


def corrupt_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".corrupt")


def _set_aside(path: Path, dest: Path, md5: str) -> tuple[Path, bool]:
    """Move a copy of ``dest`` that failed its check to ``<dest>.corrupt``, replacing an
    older one; also say whether that older one had the same MD5 (the same bytes twice)."""
    aside = corrupt_path(dest)
    same_as_before = recorded_md5(aside) == md5
    os.replace(path, aside)
    _record(aside, md5)
    return aside, same_as_before


def _accept(part: Path, dest: Path, md5: str | None) -> None:
    os.replace(part, dest)
    if md5 is not None:  # hashed just before: record it so reruns skip the hash
        _record(dest, md5)
        corrupt = corrupt_path(dest)
        corrupt.unlink(missing_ok=True)
        _record_path(corrupt).unlink(missing_ok=True)


def _kept_copy_is_good(dest: Path, md5: str, md5_source: str, show_progress: bool) -> bool:
    """Whether the file already at ``dest`` has ``md5``; a copy that does not is set aside.

    A copy verified earlier with another MD5 is good data under a wrong setting: that
    is an error naming the setting, and the file stays where it is.
    """
    recorded = recorded_md5(dest)
    if recorded == md5:
        return True
    if recorded is None:
        actual = _md5(dest, show_progress)
        if actual == md5:
            _record(dest, md5)
            return True
        if actual == recorded_md5(dest, unchanged=False):  # only its time stamp changed
            _record(dest, actual)
            recorded = actual
    if recorded is not None:
        raise MaskoptError(f"{dest}: this file was verified earlier (md5 {recorded}) but "
                           f"{md5_source} expects {md5}; the file is kept: correct "
                           f"{md5_source} and run again")
    aside, _ = _set_aside(dest, dest, actual)
    warn(f"{dest}: md5 {actual}, expected {md5} ({md5_source}); moved to {aside}, "
         "fetching it anew")
    return False


def _set_aside_copy_is_good(dest: Path, md5: str, show_progress: bool) -> bool:
    """Whether the copy set aside at ``<dest>.corrupt`` has ``md5`` after all (the MD5
    setting was wrong then and is right now); if so it is put back in place."""
    aside = corrupt_path(dest)
    if not aside.is_file():
        return False
    actual = recorded_md5(aside) or _md5(aside, show_progress)
    if actual != md5:
        return False
    os.replace(aside, dest)
    _record_path(aside).unlink(missing_ok=True)
    _record(dest, md5)
    warn(f"{dest}: the copy set aside as {aside.name} has the expected md5; put back, "
         "not fetched again")
    return True


def _total_size(response, already: int) -> int | None:
    if response.status == 206:  # Content-Range: bytes START-END/TOTAL
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _blocks(response, url: str, part: Path) -> Iterator[bytes]:
    """The response body in chunks; a failure to read is a transient error."""
    while True:
        try:
            block = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientDownloadError(
                f"{url}: transfer interrupted after {part.stat().st_size} bytes ({exc}); "
                "run again to resume") from None
        if not block:
            return
        yield block


def _open(url: str, already: int, timeout: float):
    """The server's response, from byte ``already`` on; None when nothing is left."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={already}-"} if already else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and already:  # the partial file is already complete
            return None
        error = TransientDownloadError if exc.code >= 500 else MaskoptError
        raise error(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransientDownloadError(f"{url}: cannot connect ({exc})") from None


def download_file(url: str, dest: str | Path, md5: str | None = None,
                  timeout: float = 60.0, show_progress: bool = True,
                  md5_source: str = "the expected MD5") -> Path:
    """Download ``url`` to ``dest``, resuming a partial transfer; verify; return ``dest``.

    A file already at ``dest`` is kept when its checksum (if known) matches; a verified
    file is not hashed again while its size and time stamp are unchanged.
    ``md5_source`` names where ``md5`` comes from, for the messages.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (md5 is None or _kept_copy_is_good(dest, md5, md5_source,
                                                             show_progress)):
        return dest
    if md5 is not None and _set_aside_copy_is_good(dest, md5, show_progress):
        return dest
    part = dest.with_name(dest.name + ".part")
    already = part.stat().st_size if part.exists() else 0
    response = _open(url, already, timeout)
    total = already
    if response is not None:
        with response:
            if response.status != 206:  # server ignored Range: start over
                already = 0
            total = _total_size(response, already)
            if total is not None:
                ensure_free_space(dest.parent, total - already, f"downloading {dest.name}")
            try:
                with part.open("ab" if already else "wb") as out, tqdm(
                        total=total, initial=already, unit="B", unit_scale=True,
                        desc=dest.name, disable=not show_progress, leave=False) as bar:
                    for block in _blocks(response, url, part):
                        out.write(block)
                        bar.update(len(block))
            except OSError as exc:
                raise write_error(part, exc, "the partial download is kept: free some space "
                                             "and run again to resume") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise TransientDownloadError(
            f"{url}: transfer incomplete ({got} of {total} bytes); run again to resume")
    if md5 is not None and (actual := _md5(part, show_progress)) != md5:
        aside, same_as_before = _set_aside(part, dest, actual)
        hint = (f"the previous download had the same md5: either {md5_source} is wrong "
                f"or {url} serves a damaged file; compare with the MD5 its publisher gives"
                if same_as_before else "run again to fetch it anew")
        raise MaskoptError(f"{dest.name}: checksum mismatch (md5 {actual}, expected {md5} "
                           f"from {md5_source}); the download is kept at {aside} until a good "
                           f"copy replaces it; {hint}")
    _accept(part, dest, md5)
    return dest


def download_with_retries(url: str, dest: str | Path, attempts: int = 4,
                          backoff: float = 1.0, **kwargs) -> Path:
    """``download_file``, retried with exponential backoff (``backoff`` × 1, 2, 4 … s) on
    transient failures; a partial transfer resumes on each retry."""
    for attempt in range(attempts):
        try:
            return download_file(url, dest, **kwargs)
        except TransientDownloadError as exc:
            if attempt == attempts - 1:
                raise
            warn(f"{exc} (retrying, {attempt + 1} of {attempts - 1})")
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


def _is_junk(name: str) -> bool:
    return any(part in JUNK for part in Path(name).parts)


def _member_target(archive: Path, root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(root):
        raise MaskoptError(f"{archive}: member {name!r} would be written outside {root}; "
                           "refused")
    return target


def _checked_members(zf: zipfile.ZipFile, archive: Path, root: Path,
                     include: Callable[[str], bool]) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Every member to extract with its target, all checked before anything is written."""
    members = []
    for info in zf.infolist():
        if _is_junk(info.filename) or not include(info.filename):
            continue
        target = _member_target(archive, root, info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise MaskoptError(f"{archive}: member {info.filename!r} is a symbolic link; "
                               "refused")
        members.append((info, target))
    return members


def _extract_member(zf: zipfile.ZipFile, archive: Path, info: zipfile.ZipInfo,
                    target: Path) -> None:
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
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(target, exc, f"extracting {archive.name} stopped, the archive is "
                                       "kept: free some space and run again") from None
    os.replace(tmp, target)


def safe_extract(archive: str | Path, target_dir: str | Path, show_progress: bool = True,
                 include: Callable[[str], bool] = lambda name: True) -> None:
    """Extract the members of a zip archive that ``include`` accepts into ``target_dir``.

    Every member is checked before anything is written, so a malicious archive leaves
    the target folder as it was; symbolic links are refused, and macOS junk
    (``__MACOSX/``) is skipped. What is there already is kept when it is the member
    (see :func:`_in_place`), so a rerun writes only what is missing or damaged, e.g. a
    folder removed by hand or a file edited since.
    """
    archive, root = Path(archive), Path(target_dir).resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(zf, archive, root, include)
            record = ExtractionRecord(archive, root)
            missing = [(info, target) for info, target in members
                       if not info.is_dir() and not _in_place(info, target, record)]
            record.save()
            if not missing:
                return
            root.mkdir(parents=True, exist_ok=True)
            needed = sum(info.file_size for info, _ in missing)
            ensure_free_space(root, needed, f"extracting {archive.name}")
            with tqdm(total=needed, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                      disable=not show_progress, leave=False) as bar:
                for done, (info, target) in enumerate(missing, 1):
                    _extract_member(zf, archive, info, target)
                    record.add(info.filename, target)
                    bar.update(info.file_size)
                    if done % RECORD_EVERY == 0:  # a killed run keeps most of its record
                        record.save()
            record.save()
    except zipfile.BadZipFile as exc:
        raise MaskoptError(f"{archive}: not a valid zip archive ({exc})") from None


RECORD_EVERY = 5000  # extracted members between saves of the extraction record


class ExtractionRecord:
    """Size and time stamp of each member as extracted from ``archive`` into ``root``,
    kept beside the archive (never in the pipeline's output): a file that still has
    both is taken as extracted, any other is checked against the member's CRC."""

    def __init__(self, archive: Path, root: Path):
        self.path = archive.with_name(archive.name + ".extracted.json")
        self.root = str(root)
        try:
            self._all = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._all = {}
        self.members = self._all.setdefault(self.root, {})
        self._changed = False

    def matches(self, name: str, target: Path) -> bool:
        stat = target.stat()
        return self.members.get(name) == [stat.st_size, stat.st_mtime_ns]

    def add(self, name: str, target: Path) -> None:
        stat = target.stat()
        self.members[name] = [stat.st_size, stat.st_mtime_ns]
        self._changed = True

    def save(self) -> None:
        if not self._changed:
            return
        tmp = self.path.with_name(self.path.name + ".part")
        try:
            tmp.write_text(json.dumps(self._all))
            os.replace(tmp, self.path)
        except OSError:  # only a cache of checks: without it they are made again
            tmp.unlink(missing_ok=True)
        self._changed = False


def _in_place(info: zipfile.ZipInfo, target: Path, record: ExtractionRecord) -> bool:
    """Whether ``target`` holds the member: its size, and either the size and time stamp
    it was extracted with or, for a file changed or never recorded, the member's CRC."""
    if not (target.is_file() and target.stat().st_size == info.file_size):
        return False
    if record.matches(info.filename, target):
        return True
    if _crc32(target) != info.CRC:
        return False
    record.add(info.filename, target)
    return True


def _crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            crc = zlib.crc32(block, crc)
    return crc

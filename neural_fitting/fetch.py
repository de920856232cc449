"""Resumable, checksummed HTTP downloads with a progress bar (stdlib + tqdm).

A finished file is never fetched again: ``download`` first checks the target
(size and MD5 when known). Bytes go to ``<target>.part``; an interrupted run
resumes from there with an HTTP Range request (servers that ignore it send the
whole file, which then replaces the part), and the part is renamed onto the
target only after the size and checksum match.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

TIMEOUT_SECONDS = 60.0  # per connection attempt and per read
BLOCK = 1 << 20


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_is_complete(path: str | Path, size: int | None = None, md5: str | None = None) -> bool:
    """True if ``path`` exists and matches the expected size and MD5 (each
    checked only when given; with neither, existing is enough)."""
    path = Path(path)
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or md5sum(path) == md5.lower()


def download(url: str, target: str | Path, size: int | None = None, md5: str | None = None,
             timeout: float = TIMEOUT_SECONDS) -> Path:
    """Fetch ``url`` to ``target`` unless it is already complete; returns ``target``.

    A network failure raises ConnectionError and a size or checksum mismatch
    ValueError, each with a one-line message (running again resumes); a
    mismatching part is deleted."""
    target = Path(target)
    if file_is_complete(target, size, md5):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have >= size and not file_is_complete(part, size, md5):
        have = 0  # an overlong or corrupt part: start over
    if size is None or have < size:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status != 206:
                    have = 0  # the server ignored the range: start over
                length = response.headers.get("Content-Length")
                total = size if size is not None else (have + int(length) if length else None)
                with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B",
                                                                      unit_scale=True, desc=target.name) as bar:
                    for block in iter(lambda: response.read(BLOCK), b""):
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(f"downloading {url} failed ({err}): check the connection and run again "
                                  f"to resume") from err
    if not file_is_complete(part, size, md5):
        part.unlink(missing_ok=True)
        raise ValueError(f"{url}: the download does not match the expected size or checksum: run again")
    os.replace(part, target)
    return target

"""Fetching a dataset archive, verifying its MD5 checksum and extracting it safely."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path


def fetch_url(url: str, destination: str | os.PathLike[str], timeout: float = 60.0) -> None:
    """Download ``url`` to the file ``destination`` (streamed; network errors propagate).

    Example:
        >>> import os, tempfile
        >>> source = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with open(source, "w") as handle:
        ...     _ = handle.write("hello")
        >>> target = source + ".copy"
        >>> fetch_url(Path(source).as_uri(), target)
        >>> open(target).read()
        'hello'
    """
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "empty")
        >>> open(path, "wb").close()
        >>> file_md5(path)
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_tar_safely(
    archive: str | os.PathLike[str], destination: str | os.PathLike[str]
) -> None:
    """Extract a (possibly compressed) tar archive into ``destination``, refusing unsafe members.

    Every member must be a regular file or a directory whose path stays inside ``destination``
    (no absolute paths, no ``..``, no links or device files); otherwise ``ValueError`` is raised
    before anything is written.

    Example:
        >>> import io, os, tarfile, tempfile
        >>> root = tempfile.mkdtemp()
        >>> archive = os.path.join(root, "a.tar.gz")
        >>> with tarfile.open(archive, "w:gz") as tar:
        ...     info = tarfile.TarInfo("folder/file.txt"); info.size = 2
        ...     tar.addfile(info, io.BytesIO(b"hi"))
        >>> extract_tar_safely(archive, os.path.join(root, "out"))
        >>> open(os.path.join(root, "out", "folder", "file.txt")).read()
        'hi'
    """
    root = Path(destination).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"{archive}: member {member.name!r} is not a regular file or directory "
                    "(links and device files are refused); the archive is not the expected one"
                )
            target = (root / member.name).resolve()
            if Path(member.name).is_absolute() or not target.is_relative_to(root):
                raise ValueError(
                    f"{archive}: member {member.name!r} would be written outside {root}; "
                    "the archive is not the expected one"
                )
        root.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(root, members=members)  # noqa: S202 - members checked above


def download_and_extract(
    url: str,
    md5: str,
    data_dir: str | os.PathLike[str],
    filename: str | None = None,
) -> Path:
    """Download an archive into ``data_dir``, verify its MD5 and extract it there.

    Nothing is fetched when ``data_dir`` already holds the archive with the right MD5. The
    download goes to ``<filename>.part`` and is renamed only after the checksum matches; a
    mismatch deletes it and raises ``ValueError``.

    Args:
        url: archive address.
        md5: expected hex MD5 of the archive.
        data_dir: where the archive is stored and extracted.
        filename: archive file name (default: the last component of ``url``).

    Returns:
        The path of the verified archive.

    Example:
        >>> import io, os, tarfile, tempfile
        >>> root = tempfile.mkdtemp()
        >>> archive = os.path.join(root, "src.tar.gz")
        >>> with tarfile.open(archive, "w:gz") as tar:
        ...     info = tarfile.TarInfo("set/x.bin"); info.size = 1
        ...     tar.addfile(info, io.BytesIO(b"x"))
        >>> out = os.path.join(root, "data")
        >>> path = download_and_extract(Path(archive).as_uri(), file_md5(archive), out)
        >>> sorted(os.listdir(out))
        ['set', 'src.tar.gz']
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / (filename or url.rstrip("/").rsplit("/", 1)[-1])
    expected = md5.lower()
    if not (archive.is_file() and file_md5(archive) == expected):
        partial = archive.with_name(archive.name + ".part")
        try:
            fetch_url(url, partial)
            actual = file_md5(partial)
            if actual != expected:
                raise ValueError(
                    f"MD5 mismatch for {url}: expected {expected}, got {actual}; the download is "
                    "corrupt or the file changed upstream - delete it and try again"
                )
            partial.replace(archive)
        finally:
            partial.unlink(missing_ok=True)
    extract_tar_safely(archive, directory)
    return archive

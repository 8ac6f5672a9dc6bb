"""Unpacking an uploaded bundle: a streaming tar reader with hard limits, the signature first.

An upload is untrusted until its signed manifest is verified, so the archive is read the way a
parser of hostile input should be: one 512-byte header at a time, never a whole archive's index
(:mod:`tarfile` reads long-name and pax headers whole and lists every member before the first
check: a 400 MB header or 300,000 directory entries cost gigabytes). Limits, each a 4xx:

- at most :data:`MAX_ENTRIES` entries (files and folders) and :data:`MAX_HEADERS` headers;
- names of at most :data:`MAX_NAME` bytes, pax / GNU long-name headers of at most
  :data:`MAX_EXT_HEADER` bytes; only regular files and folders (no links, devices, sparse files);
- files at the top or inside one folder, no absolute paths, no ``..``, no name twice;
- ``manifest.json`` (:data:`MAX_MANIFEST` bytes) and ``manifest.sig`` are read into memory, the
  rest is streamed to disk, all of it at most ``max_bytes``.

The manifest is verified as soon as it and its signature have been read (``verify``): a file the
signed manifest does not list is refused with 422 ``unlisted_file`` and never kept. Archives:
.tar, .tar.gz (what ``tar_bundle`` and the CLI send), .tar.bz2, .tar.xz.

    manifest = unpack_bundle(archive, staged, 256 << 20, verify=lambda raw, sig: ...)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeops.edge.bundle import MANIFEST, SIGNATURE, BundleError
from edgeops.edge.store import StoreError

BLOCK = 512
MAX_ENTRIES = 16
MAX_HEADERS = 64
MAX_NAME = 255
MAX_EXT_HEADER = 8192
MAX_MANIFEST = 4 << 20
MAX_SIGNATURE = 4096
CHUNK = 1 << 20
#: tar type flags: regular files, folders, and the headers that describe the next entry
FILE_TYPES, DIR_TYPE, PAX_TYPES, LONGNAME_TYPE = (b"0", b"\0", b"7"), b"5", (b"x", b"g"), b"L"


def _bad(message: str, status: int = 400, code: str = "bad_archive") -> StoreError:
    return StoreError(status, code, message)


@dataclass
class Entry:
    name: str
    size: int
    is_dir: bool


def _open(archive: Path) -> IO[bytes]:
    """``archive`` as a stream of tar bytes (decompressed on the fly)."""
    with open(archive, "rb") as fh:
        magic = fh.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(archive, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(archive, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(archive, "rb")
    return open(archive, "rb")  # noqa: SIM115 (closed by the caller's with)


def _number(field: bytes) -> int:
    """A tar header number: octal text, or GNU base-256 (first byte 0x80)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise _bad("the archive has a negative number in a header")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _bad("the archive has a damaged header (not a tar archive?)") from None


def _checksum_ok(block: bytes) -> bool:
    try:
        want = _number(block[148:156])
    except StoreError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    return want in (unsigned, signed)


def _text(raw: bytes, what: str) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"the archive has a {what} that is not UTF-8") from None
    if "\0" in name or len(raw) > MAX_NAME:
        raise _bad(f"the archive has a {what} longer than {MAX_NAME} bytes or with a NUL byte")
    return name


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: ``"LEN key=value\\n"`` each."""
    out, pos = {}, 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise _bad("the archive has a damaged pax header")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value
        pos += length
    return out


class TarReader:
    """Entries of a tar stream one by one; :meth:`copy` / :meth:`read` take the current entry's
    data (what is left of it is skipped before the next header)."""

    def __init__(self, stream: IO[bytes], max_bytes: int) -> None:
        self.stream, self.max_bytes = stream, max_bytes
        self.total = 0
        self._left = 0  # data bytes of the current entry not read yet
        self._pad = 0

    def _exact(self, n: int) -> bytes:
        parts, want = [], n
        while want:
            got = self.stream.read(min(want, CHUNK))
            if not got:
                raise _bad("the archive is cut short")
            parts.append(got)
            want -= len(got)
        return b"".join(parts)

    def _block(self) -> bytes:
        """The next 512 bytes (fewer only at the end of the stream)."""
        block = self.stream.read(BLOCK)
        while block and len(block) < BLOCK:
            more = self.stream.read(BLOCK - len(block))
            if not more:
                break
            block += more
        return block

    def _skip_rest(self) -> None:
        while self._left:
            self._left -= len(self._exact(min(self._left, CHUNK)))
        if self._pad:
            self._exact(self._pad)
            self._pad = 0

    def _data(self, size: int) -> bytes:
        data = self._exact(size)
        if size % BLOCK:
            self._exact(BLOCK - size % BLOCK)
        return data

    def entries(self) -> Iterator[Entry]:
        headers = entries = 0
        long_name: str | None = None
        pax: dict[str, bytes] = {}
        while True:
            self._skip_rest()
            block = self._block()
            if len(block) < BLOCK and headers == 0:
                raise _bad("the upload is not a tar or tar.gz archive (too short)")
            if not block or block == bytes(BLOCK):
                return  # end of archive (two zero blocks; a missing end is tolerated)
            if len(block) < BLOCK:
                raise _bad("the archive is cut short")
            if not _checksum_ok(block):
                if headers == 0:
                    raise _bad("the upload is not a tar or tar.gz archive")
                raise _bad("the archive has a damaged header (bad checksum)")
            headers += 1
            if headers > MAX_HEADERS:
                raise _bad(f"the archive has more than {MAX_HEADERS} headers; a bundle has a few")
            kind, size = block[156:157], _number(block[124:136])
            if kind in PAX_TYPES or kind == LONGNAME_TYPE:
                if size > MAX_EXT_HEADER:
                    raise _bad(
                        f"the archive has a {size}-byte {'pax' if kind != b'L' else 'long-name'} "
                        f"header; at most {MAX_EXT_HEADER} are allowed"
                    )
                data = self._data(size)
                if kind == b"x":
                    pax = _pax(data)
                elif kind == LONGNAME_TYPE:
                    long_name = _text(data.rstrip(b"\0"), "long name")
                continue  # a global pax header ("g") is read and ignored
            name = self._name(block, long_name, pax.get("path"))
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise _bad("the archive has a damaged pax size") from None
            if size < 0:
                raise _bad(f"the archive entry {name!r} has a negative size")
            sparse = any(k.startswith("GNU.sparse") for k in pax)
            long_name, pax = None, {}
            if sparse or kind not in FILE_TYPES + (DIR_TYPE,):
                raise _bad(f"the archive entry {name!r} is not a plain file")
            entries += 1
            if entries > MAX_ENTRIES:
                raise _bad(f"the archive holds more than {MAX_ENTRIES} entries; a bundle has a few")
            is_dir = kind == DIR_TYPE or name.endswith("/")
            if is_dir and size:
                raise _bad(f"the archive's folder {name!r} has data")
            self.total += size
            if self.total > self.max_bytes:
                raise _bad(
                    f"the bundle unpacks to more than {self.max_bytes} bytes", 413, "too_large"
                )
            self._left, self._pad = size, -size % BLOCK
            yield Entry(name, size, is_dir)

    @staticmethod
    def _name(block: bytes, long_name: str | None, pax_path: bytes | None) -> str:
        if pax_path is not None:
            return _text(pax_path, "name")
        if long_name is not None:
            return long_name
        name = _text(block[0:100].split(b"\0", 1)[0], "name")
        if block[257:263] == b"ustar\0":  # POSIX: a prefix joins the name
            prefix = _text(block[345:500].split(b"\0", 1)[0], "name")
            name = f"{prefix}/{name}" if prefix else name
        return name

    def read(self) -> bytes:
        """The current entry's data (the caller checked its size)."""
        data, self._left = self._exact(self._left), 0
        return data

    def copy(self, out: IO[bytes], on_write_error: Callable[[OSError], Exception]) -> None:
        """The current entry's data into ``out``, a chunk at a time (a failed write raises
        ``on_write_error(exc)``: the disk is full, the archive is not damaged)."""
        while self._left:
            chunk = self._exact(min(self._left, CHUNK))
            try:
                out.write(chunk)
            except OSError as exc:
                raise on_write_error(exc) from None
            self._left -= len(chunk)


def bundle_name(name: str) -> str | None:
    """The file name an archive entry stands for (None: a folder), or 400 if its path is unsafe.
    Files may sit at the top or inside one top-level folder."""
    if name.startswith("/") or "\\" in name:
        raise _bad(f"the archive entry {name[:100]!r} has an unsafe path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or len(parts) > 2:
        raise _bad(f"the archive entry {name[:100]!r} has an unsafe path")
    return parts[-1] if parts else None


def unpack_bundle(
    archive: Path, dest: Path, max_bytes: int, verify: Callable[[bytes, bytes], dict[str, Any]]
) -> dict[str, Any]:
    """Unpack the bundle in ``archive`` into ``dest``; return its verified manifest.

    ``verify(manifest_bytes, signature_bytes)`` returns the manifest or raises
    :class:`BundleError`; it is called as soon as both were read. Raises :class:`StoreError`
    (400 ``bad_archive``, 413 ``too_large``, 422 ``unlisted_file``) or :class:`BundleError`;
    whatever it raises, the caller removes ``dest``.
    """
    small: dict[str, bytes] = {}
    written: list[str] = []  # files written before the manifest was verified
    manifest: dict[str, Any] | None = None
    try:
        with _open(archive) as stream:
            reader = TarReader(stream, max_bytes)
            for entry in reader.entries():
                fname = None if entry.is_dir else bundle_name(entry.name)
                if fname is None:
                    bundle_name(entry.name)  # a folder's path must be safe too
                    continue
                if fname in small or fname in written or (dest / fname).exists():
                    raise _bad(f"the archive holds {fname!r} twice")
                if fname in (MANIFEST, SIGNATURE):
                    cap = MAX_MANIFEST if fname == MANIFEST else MAX_SIGNATURE
                    if entry.size > cap:
                        raise _bad(f"{fname} is {entry.size} bytes; at most {cap} are allowed")
                    small[fname] = reader.read()
                    if manifest is None and len(small) == 2:
                        manifest = verify(small[MANIFEST], small[SIGNATURE])
                    continue
                _check_listed(manifest, fname)
                _write(reader, dest / fname)
                if manifest is None:
                    written.append(fname)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:  # gzip/bz2/xz: damaged stream
        raise _bad(f"the archive is damaged: {str(exc)[:120]}") from None
    if MANIFEST not in small:
        raise BundleError(
            BundleError.MISSING_FILE,
            "the archive holds no manifest.json",
            "upload a bundle directory made by the bundle stage",
        )
    if SIGNATURE not in small:
        raise BundleError(
            BundleError.MISSING_SIGNATURE,
            "the archive holds no manifest.sig: the bundle is unsigned",
            "sign it: the bundle stage signs with the key from `edgeops keys init`",
        )
    if manifest is None:
        manifest = verify(small[MANIFEST], small[SIGNATURE])
    for fname in written:
        _check_listed(manifest, fname, dest)
    for fname, data in small.items():
        _write_bytes(dest / fname, data)
    return manifest


def _check_listed(manifest: dict[str, Any] | None, fname: str, dest: Path | None = None) -> None:
    if manifest is not None and fname not in manifest["files"]:
        if dest is not None:
            (dest / fname).unlink(missing_ok=True)
        raise StoreError(
            422,
            "unlisted_file",
            f"the archive holds {fname[:100]!r}, which the signed manifest does not list; a "
            f"bundle holds {sorted(manifest['files'])} plus {MANIFEST} and {SIGNATURE} only",
        )


def _write(reader: TarReader, target: Path) -> None:
    try:
        out = open(target, "xb")  # noqa: SIM115 (closed below; reading the archive raises too)
    except OSError as exc:
        raise _unwritable(exc) from None
    with out:
        reader.copy(out, _unwritable)
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise _unwritable(exc) from None


def _write_bytes(target: Path, data: bytes) -> None:
    try:
        with open(target, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise _unwritable(exc) from None


def _unwritable(exc: OSError) -> StoreError:
    return StoreError(
        507,
        "insufficient_storage",
        f"cannot write the upload into the state directory: {exc.strerror or exc}",
    )

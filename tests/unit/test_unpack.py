"""The agent's streaming tar reader and the signed manifest's shape checks, without an agent."""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

import pytest

from edgeops.edge import manifest as manifest_shape
from edgeops.edge.bundle import BundleError
from edgeops.edge.store import StoreError
from edgeops.edge.unpack import MAX_EXT_HEADER, TarReader, bundle_name, unpack_bundle

MB = 1 << 20


def tar(members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def entries(data: bytes, max_bytes: int = MB) -> list[tuple[str, bytes]]:
    reader = TarReader(io.BytesIO(data), max_bytes)
    return [(e.name, b"" if e.is_dir else reader.read()) for e in reader.entries()]


def refused(data: bytes, max_bytes: int = MB) -> StoreError:
    with pytest.raises(StoreError) as err:
        entries(data, max_bytes)
    return err.value


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_every_tar_format_reads_back(fmt: int) -> None:
    name = "bundle/" + "m" * 120 if fmt != tarfile.USTAR_FORMAT else "b/model.onnx"
    members = [("manifest.json", b"{}"), (name, bytes(range(256)) * 5), ("empty", b"")]
    assert entries(tar(members, fmt)) == members


def test_a_negative_pax_size_is_refused() -> None:
    record = b"size=-5\n"
    record = f"{len(record) + 3} ".encode() + record  # "11 size=-5\n"
    pax = tarfile.TarInfo("pax")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    body = pax.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    body += tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    assert "negative size" in refused(body).message


def test_pax_names_and_sizes_apply_to_the_next_entry_only() -> None:
    members = [("é" * 40, b"abc"), ("plain", b"x" * 600)]  # non-ASCII: a pax "path" record
    assert entries(tar(members)) == members


def test_base256_sizes_are_read() -> None:
    info = tarfile.TarInfo("f")
    info.size = 5
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[124:136] = b"\x80" + (5).to_bytes(11, "big")
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    assert entries(bytes(block) + b"hello".ljust(512, b"\0") + bytes(1024)) == [("f", b"hello")]


def test_limits_are_checked_from_the_header() -> None:
    long = tarfile.TarInfo("././@LongLink")
    long.type, long.size = tarfile.GNUTYPE_LONGNAME, MAX_EXT_HEADER + 1
    assert "long-name header" in refused(long.tobuf(tarfile.USTAR_FORMAT)).message  # no data read
    assert refused(tar([("big", b"x" * 2000)]), max_bytes=1000).code == "too_large"
    assert "more than 16 entries" in refused(tar([(f"f{i}", b"") for i in range(17)])).message


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        (tarfile.SYMTYPE, "not a plain file"),
        (tarfile.LNKTYPE, "not a plain file"),
        (tarfile.FIFOTYPE, "not a plain file"),
        (tarfile.CHRTYPE, "not a plain file"),
    ],
)
def test_links_and_devices_are_refused(kind: bytes, problem: str) -> None:
    info = tarfile.TarInfo("model.onnx")
    info.type, info.linkname = kind, "/etc/passwd"
    assert problem in refused(info.tobuf(tarfile.PAX_FORMAT) + bytes(1024)).message


def test_damaged_archives_are_bad_archive() -> None:
    good = tar([("a", b"x" * 3000)])
    assert "cut short" in refused(good[:1500]).message
    assert "not a tar" in refused(b"not a tarball " * 100).message
    assert "not a tar" in refused(b"short").message
    two = tar([("a", b"x" * 10), ("b", b"y")])  # the second header at 1024
    assert "checksum" in refused(two[:1024] + b"z" * 512 + two[1536:]).message


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/b/c", "a\\b"])
def test_unsafe_paths_are_refused(name: str) -> None:
    with pytest.raises(StoreError, match="unsafe path"):
        bundle_name(name)


def test_bundle_names_at_the_top_or_in_one_folder() -> None:
    assert [bundle_name(n) for n in ("model.onnx", "./model.onnx", "b/model.onnx", "b/", ".")] == [
        "model.onnx",
        "model.onnx",
        "model.onnx",
        "b",
        None,
    ]


def test_unpack_verifies_the_manifest_before_keeping_files(tmp_path: Path) -> None:
    seen = []

    def verify(raw: bytes, sig: bytes) -> dict:
        seen.append((raw, sig))
        return {"files": {"model.onnx": {}}}

    body = tar([("manifest.json", b"{}"), ("manifest.sig", b"s"), ("model.onnx", b"m")])
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(zlib.compress(body, wbits=31))
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack_bundle(archive, dest, MB, verify)
    assert seen == [(b"{}", b"s")]
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "manifest.sig", "model.onnx"]

    for members in (
        [("x.sh", b"1"), ("manifest.json", b"{}"), ("manifest.sig", b"s")],
        [("manifest.json", b"{}"), ("manifest.sig", b"s"), ("x.sh", b"1")],
    ):
        archive.write_bytes(tar(members))
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        with pytest.raises(StoreError) as err:
            unpack_bundle(archive, out, MB, verify)
        assert err.value.code == "unlisted_file" and not (out / "x.sh").exists()

    archive.write_bytes(tar([("manifest.json", b"{}")]))
    with pytest.raises(BundleError) as berr:
        unpack_bundle(archive, tmp_path / "dest2", MB, verify)
    assert berr.value.code == BundleError.MISSING_SIGNATURE


GOOD = {
    "format_version": 1,
    "model": {"name": "m", "version": "1.0.0", "created_at": "2026-01-01T00:00:00Z"},
    "files": {"model.onnx": {"sha256": "0" * 64}},
    "inputs": [
        {"name": "t", "dtype": "float32", "nullable": False, "min": 0, "max": 1},
        {"name": "c", "dtype": "string", "categories": ["a"]},
    ],
    "classes": [0, 1],
    "golden": {
        "tolerance": 1e-5,
        "examples": [{"inputs": {"t": 0.5, "c": None}, "label": 0, "probabilities": [0.6, 0.4]}],
    },
}


def test_a_well_formed_manifest_has_no_problems() -> None:
    assert manifest_shape.problems(GOOD) == []
    assert manifest_shape.created_at(GOOD).isoformat() == "2026-01-01T00:00:00+00:00"
    naive = {"model": {"created_at": "2026-01-01T00:00:00"}}
    assert manifest_shape.created_at(naive) == manifest_shape.created_at(GOOD)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("model.version", "a\x00b", "model.version"),
        ("model.version", ".hidden", "model.version"),
        ("model.created_at", 20260101, "model.created_at"),
        ("inputs", [], "inputs"),
        ("inputs.0.min", float("nan"), "inputs[0].min"),
        ("classes", [0, "0"], "classes"),
        (
            "golden.examples.0.probabilities",
            [0.5, float("inf")],
            "golden.examples[0].probabilities",
        ),
        ("golden.examples.0.inputs.c", 3, "golden.examples[0].inputs.c"),
        ("files.model.onnx", None, "files.model.onnx.sha256"),
    ],
)
def test_malformed_manifests_name_the_field(path: str, value: object, field: str) -> None:
    import copy

    m = copy.deepcopy(GOOD)
    if path == "files.model.onnx":
        m["files"]["model.onnx"] = value
    else:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    assert field in {p["field"] for p in manifest_shape.problems(m)}

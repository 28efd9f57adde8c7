"""Fetching the corpus into the cache: real pip, dpkg-deb and pydicom files, no network.

A tiny wheel built here is fetched by ``pip download`` from a ``file://`` URL;
a tiny ``.deb`` is built and opened by ``dpkg-deb``; the two pydicom head
slices come from the installed pydicom. The one test that downloads the real
corpus is marked slow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_data_formats import write_inv3, write_mrc, write_nrrd

from ctpnp.data import (
    SOURCES,
    Archive,
    DataSourceError,
    Source,
    cached,
    fetch,
    list_sources,
    load_patient,
)
from ctpnp.data.download import extract_member
from ctpnp.data.fetch import read_source_volume

RNG = np.random.default_rng(3)
STORED = RNG.normal(0, 200, size=(4, 6, 5)).astype(np.float32)  # (nz, ny, nx) as in the MRC
STORED[0, 0, :3] = -3024.0  # outside-FOV padding: clipped to -1024


def build_wheel(folder: Path, member: str, data: bytes) -> Path:
    """A minimal valid wheel ``tinyct-1.0`` holding ``member``."""
    path = folder / "tinyct-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, data)
        wheel.writestr("tinyct-1.0.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: tinyct\nVersion: 1.0\n")
        wheel.writestr("tinyct-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                       "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("tinyct-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture
def tiny_source(tmp_path: Path) -> Source:
    """A one-patient table whose archive is a local wheel holding an MRC volume."""
    mrc = tmp_path / "vol.mrc"
    write_mrc(mrc, STORED)
    registry = tmp_path / "registry"
    registry.mkdir()
    wheel = build_wheel(registry, "tinyct/data/vol.mrc", mrc.read_bytes())
    archive = Archive(
        name="tinyct-1.0", client="pip", requirement=f"tinyct @ {wheel.as_uri()}",
        filename=wheel.name, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        registry="a folder", package="tinyct", version="1.0", licence="MIT", origin="here")
    return Source("tiny", "a test volume", archive, "tinyct/data/vol.mrc", "mrc", 1.5, 2.0,
                  voxel_assumed=True, transpose=(2, 1, 0))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_with_pip_writes_the_oriented_clipped_volume(tmp_path: Path,
                                                           tiny_source: Source) -> None:
    cache = tmp_path / "cache"
    messages = []
    (record,) = fetch(["tiny"], cache, lambda p, m: messages.append((p, m)),
                      sources={"tiny": tiny_source})
    volume = load_patient("tiny", cache)
    expected = np.maximum(STORED.transpose(2, 1, 0), -1024.0)
    np.testing.assert_array_equal(volume.hu, expected)
    assert volume.hu.dtype == np.float32
    assert (volume.pixel_mm, volume.slice_mm, volume.voxel_assumed) == (1.5, 2.0, True)
    assert record["clipped_voxels"] == 3
    assert record["hu_min"] == -1024.0
    assert record["sha256"] == tiny_source.archive.sha256
    assert record["shape"] == [5, 6, 4]
    assert [m for _, m in messages][-1] == "done"
    assert _leftovers(cache) == ["tiny.json", "tiny.npy"]  # no download folder left
    assert [r["patient"] for r in cached(cache)] == ["tiny"]


def test_a_cached_patient_is_not_downloaded_again(tmp_path: Path, tiny_source: Source) -> None:
    cache = tmp_path / "cache"
    (first,) = fetch(["tiny"], cache, sources={"tiny": tiny_source})
    shutil.rmtree(tmp_path / "registry")  # the wheel is gone: pip would fail now
    messages = []
    (again,) = fetch(["tiny"], cache, lambda p, m: messages.append(m),
                     sources={"tiny": tiny_source})
    assert again == first  # the same record, fetched_at included
    assert messages == [f"in the cache {cache}"]
    rows = list_sources(cache, sources={"tiny": tiny_source})
    assert rows[0]["cached"] and rows[0]["shape"] == [5, 6, 4]


def test_a_changed_file_is_one_clear_error_and_caches_nothing(tmp_path: Path,
                                                              tiny_source: Source) -> None:
    cache = tmp_path / "cache"
    changed = dataclasses.replace(tiny_source, archive=dataclasses.replace(
        tiny_source.archive, sha256="0" * 64))
    with pytest.raises(DataSourceError, match=r"tinyct-1\.0: .*tinyct-1\.0-py3-none-any\.whl: "
                                              r"sha256 [0-9a-f]{64} is not the pinned 0{64}"):
        fetch(["tiny"], cache, sources={"tiny": changed})
    assert _leftovers(cache) == []
    with pytest.raises(DataSourceError, match="not in the cache"):
        load_patient("tiny", cache)


def test_a_failed_download_is_one_clear_error(tmp_path: Path, tiny_source: Source) -> None:
    missing = dataclasses.replace(tiny_source, archive=dataclasses.replace(
        tiny_source.archive,
        requirement=f"tinyct @ {(tmp_path / 'gone' / tiny_source.archive.filename).as_uri()}"))
    with pytest.raises(DataSourceError, match=r"tinyct-1\.0: could not download "
                                              r"tinyct-1\.0-py3-none-any\.whl with `pip download"):
        fetch(["tiny"], tmp_path / "cache", sources={"tiny": missing})
    assert _leftovers(tmp_path / "cache") == []


def test_unknown_patients_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="nobody: unknown patient; known: lung1"):
        fetch(["nobody"], tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_deb_member_is_extracted_and_oriented(tmp_path: Path) -> None:
    """A real .deb built by dpkg-deb, holding an InVesalius project stored bottom-up."""
    values = RNG.integers(-1024, 2000, size=(3, 4, 5)).astype(np.int16)
    root = tmp_path / "pkg"
    member = "usr/share/doc/tiny/examples/Head.inv3"
    (root / member).parent.mkdir(parents=True)
    write_inv3(root / member, values, (0.9, 0.9, 1.5))
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: tiny\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / "tiny_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    path = extract_member(deb, member, work)
    source = dataclasses.replace(SOURCES["cranium"], pixel_mm=0.9, member=member)
    hu, pixel_mm, slice_mm = read_source_volume(source, path)
    np.testing.assert_array_equal(hu, values[:, ::-1, :])  # rows flipped to anterior-first
    assert (pixel_mm, slice_mm) == (pytest.approx(0.9), 1.5)
    with pytest.raises(DataSourceError, match=r"tiny_1\.0_all\.deb: .*no member 'usr/nothing'"):
        extract_member(deb, "usr/nothing", work)


def test_an_sdist_member_is_read_with_the_nrrd_orientation(tmp_path: Path) -> None:
    values_xyz = RNG.integers(-1024, 2000, size=(5, 4, 3)).astype(np.int16)
    nrrd = tmp_path / "lung_image.nrrd"
    write_nrrd(nrrd, values_xyz, (0.6, 0.6, 5.0))
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(nrrd, "pkg-1.0/data/lung_image.nrrd")
    work = tmp_path / "work"
    work.mkdir()
    path = extract_member(sdist, "pkg-1.0/data/lung_image.nrrd", work)
    source = dataclasses.replace(SOURCES["lung1"], pixel_mm=0.6)
    hu, pixel_mm, _ = read_source_volume(source, path)
    assert pixel_mm == pytest.approx(0.6)
    for k in range(3):
        np.testing.assert_array_equal(hu[k], values_xyz[:, :, k].T)  # axial = a[:, :, k].T
    wrong = dataclasses.replace(source, pixel_mm=0.7)
    with pytest.raises(ValueError, match=r"lung_image\.nrrd: voxel size: .* recorded for lung1"):
        read_source_volume(wrong, path)


def test_the_pydicom_heads_are_fetched_from_the_installed_pydicom(tmp_path: Path) -> None:
    records = fetch(["head_hitachi", "head_ge"], tmp_path)
    for record, padding, pixel_mm in zip(records, (-2000, -3024), (0.431, 0.478516),
                                         strict=True):
        volume = load_patient(record["patient"], tmp_path)
        assert volume.hu.shape == (1, 512, 512)
        assert volume.hu.min() == -1024.0 and record["clipped_voxels"] > 1000
        assert volume.pixel_mm == pytest.approx(pixel_mm)
        assert record["split"] == "validation"
        assert str(padding) in SOURCES[record["patient"]].note
    assert json.loads((tmp_path / "head_ge.json").read_text())["licence"].startswith("MIT")


def test_importing_ctpnp_data_loads_no_pydicom_nor_torch() -> None:
    code = ("import sys, ctpnp.data; "
            "print(*(m in sys.modules for m in ('pydicom', 'ctpnp.io', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False", "False"]


@pytest.mark.slow
def test_the_real_corpus_is_fetched_verified_and_read(tmp_path: Path) -> None:
    """Downloads about 58 MB with pip and apt-get (needs the network and apt lists)."""
    records = {r["patient"]: r for r in fetch(cache_dir=tmp_path)}
    shapes = {"lung1": [48, 512, 512], "lung2": [61, 512, 512], "cranium": [108, 256, 256],
              "liver": [128, 128, 128], "head_hitachi": [1, 512, 512],
              "head_ge": [1, 512, 512]}
    assert {p: r["shape"] for p, r in records.items()} == shapes
    for patient, record in records.items():
        assert record["hu_min"] == -1024.0 and 1500 < record["hu_max"] <= 3071, patient
        assert record["pixel_mm"] == pytest.approx(SOURCES[patient].pixel_mm, rel=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{p}.{ext}" for p in shapes for ext in ("json", "npy"))

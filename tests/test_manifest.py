"""envpack.json and pixi-pack.json: round trips, version checks, malformed input, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envpack.core.errors import ArchiveError, EnvpackError
from envpack.core.layout import SBOM_NAME
from envpack.core.manifest import (
    FORMAT_VERSION,
    manifest_from_json,
    manifest_to_json,
    pixi_pack_json,
    pixi_pack_platform,
)
from envpack.core.models import Artifact, ArtifactKind, Listed, Manifest

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
MD5 = "0123456789abcdef" * 2


def _manifest(**overrides: Any) -> Manifest:
    fields: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "envpack_version": "0.1.0",
        "platform": "linux-64",
        "environment": "default",
        "lock_sha256": SHA_A,
        "virtual_packages": ("__glibc >=2.17",),
        "artifacts": (
            Artifact(
                kind="conda",
                name="python",
                version="3.11.9",
                build="hb806964_0_cpython",
                filename="python-3.11.9-hb806964_0_cpython.conda",
                subdir="linux-64",
                sha256=SHA_B,
                md5=MD5,
                size=31_000_000,
            ),
            Artifact(
                kind="conda",
                name="tzdata",
                version="2024a",
                build="h0c530f3_0",
                filename="tzdata-2024a-h0c530f3_0.tar.bz2",
                subdir="noarch",
                sha256=SHA_A,
                size=0,
            ),
            Artifact(
                kind="wheel",
                name="ordered-enum",
                version="0.0.9",
                filename="ordered_enum-0.0.9-py3-none-any.whl",
                sha256=SHA_B,
                size=5000,
            ),
        ),
    }
    fields.update(overrides)
    return Manifest(**fields)


def _doc() -> dict[str, Any]:
    """A valid manifest as a plain JSON document, written by hand (not by the code under test)."""
    return {
        "format_version": 1,
        "envpack_version": "0.1.0",
        "platform": "linux-64",
        "environment": "default",
        "lock_sha256": SHA_A,
        "virtual_packages": ["__glibc >=2.17"],
        "artifacts": [
            {
                "path": "channel/linux-64/python-3.11.9-h0_0.conda",
                "kind": "conda",
                "name": "python",
                "version": "3.11.9",
                "build": "h0_0",
                "sha256": SHA_B,
                "md5": MD5,
                "size": 123,
            },
            {
                "path": "pypi/ordered_enum-0.0.9-py3-none-any.whl",
                "kind": "wheel",
                "name": "ordered-enum",
                "version": "0.0.9",
                "build": "",
                "sha256": SHA_A,
                "size": 5,
            },
        ],
    }


def _load(doc: object) -> Manifest:
    return manifest_from_json(json.dumps(doc).encode())


# --- round trip -----------------------------------------------------------------------------


def test_round_trip() -> None:
    manifest = _manifest()
    assert manifest_from_json(manifest_to_json(manifest)) == manifest


def test_serialisation_is_stable_and_sorted() -> None:
    data = manifest_to_json(_manifest())
    assert data == manifest_to_json(_manifest())
    doc = json.loads(data)
    assert list(doc) == sorted(doc)
    assert doc["format_version"] == FORMAT_VERSION
    paths = [a["path"] for a in doc["artifacts"]]
    assert paths == [
        "channel/linux-64/python-3.11.9-hb806964_0_cpython.conda",
        "channel/noarch/tzdata-2024a-h0c530f3_0.tar.bz2",
        "pypi/ordered_enum-0.0.9-py3-none-any.whl",
    ]
    assert "md5" in doc["artifacts"][0]
    assert "md5" not in doc["artifacts"][1]  # unknown md5 is left out, not null


def test_hand_written_document_parses() -> None:
    manifest = _load(_doc())
    python, wheel = manifest.artifacts
    assert (python.kind, python.subdir, python.filename) == (
        "conda",
        "linux-64",
        "python-3.11.9-h0_0.conda",
    )
    assert python.path == "channel/linux-64/python-3.11.9-h0_0.conda"
    assert python.md5 == MD5
    assert (wheel.kind, wheel.subdir, wheel.md5) == ("wheel", "", None)
    assert manifest.virtual_packages == ("__glibc >=2.17",)
    assert manifest.artifact_for("pypi/ordered_enum-0.0.9-py3-none-any.whl") == wheel
    assert manifest.artifact_for("pypi/other.whl") is None


def test_unknown_fields_are_ignored() -> None:
    doc = _doc()
    doc["future_field"] = {"anything": [1, 2, 3]}
    doc["artifacts"][0]["signature"] = "abc"
    assert _load(doc) == _load(_doc())


def test_missing_virtual_packages_means_none() -> None:
    doc = _doc()
    del doc["virtual_packages"]
    assert _load(doc).virtual_packages == ()


# --- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3, 99, "1", "2", None, -1])
def test_unknown_format_version_is_refused(version: object) -> None:
    doc = _doc()
    doc["format_version"] = version
    with pytest.raises(ArchiveError) as info:
        _load(doc)
    message = str(info.value)
    assert "format version" in message
    assert repr(version) in message
    assert str(FORMAT_VERSION) in message


def test_version_2_lists_the_sbom_and_round_trips() -> None:
    manifest = _manifest(sbom=Listed(SBOM_NAME, SHA_B, 1234))
    doc = json.loads(manifest_to_json(manifest))
    assert doc["format_version"] == 2
    assert doc["sbom"] == {"path": "sbom.cdx.json", "sha256": SHA_B, "size": 1234}
    assert manifest_from_json(manifest_to_json(manifest)) == manifest


def test_version_1_archives_are_still_read_and_know_no_sbom() -> None:
    # An archive made before SBOMs existed; an "sbom" field there is an unknown field.
    doc = _doc()
    doc["sbom"] = {"path": SBOM_NAME, "sha256": SHA_B, "size": 1}
    manifest = _load(doc)
    assert manifest.format_version == 1
    assert manifest.sbom is None


def test_version_2_without_an_sbom_has_none() -> None:
    doc = _doc()
    doc["format_version"] = 2
    assert _load(doc).sbom is None


@pytest.mark.parametrize(
    "sbom",
    [
        "sbom.cdx.json",
        {"path": "channel/linux-64/x.conda", "sha256": SHA_B, "size": 1},
        {"path": "../sbom.cdx.json", "sha256": SHA_B, "size": 1},
        {"path": SBOM_NAME, "sha256": "abc", "size": 1},
        {"path": SBOM_NAME, "size": 1},
        {"path": SBOM_NAME, "sha256": SHA_B, "size": -1},
        {"path": SBOM_NAME, "sha256": SHA_B, "size": True},
        {"path": SBOM_NAME, "sha256": SHA_B},
    ],
)
def test_malformed_sbom_entry_is_refused(sbom: object) -> None:
    doc = _doc()
    doc["format_version"] = 2
    doc["sbom"] = sbom
    with pytest.raises(ArchiveError, match=r"(?i)sbom"):
        _load(doc)


def test_missing_format_version_is_refused() -> None:
    doc = _doc()
    del doc["format_version"]
    with pytest.raises(ArchiveError, match="format version"):
        _load(doc)


@pytest.mark.parametrize("version", [True, 1.0], ids=["true", "float"])
def test_format_version_must_be_an_integer(version: object) -> None:
    doc = _doc()
    doc["format_version"] = version
    with pytest.raises(ArchiveError):
        _load(doc)


# --- malformed fields -----------------------------------------------------------------------


def _set(doc: dict[str, Any], key: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: dict[str, Any] = doc["artifacts"][0] if key.startswith("a.") else doc
    name = key.removeprefix("a.")
    if value is _DELETE:
        del target[name]
    else:
        target[name] = value
    return doc


_DELETE = object()

MALFORMED: list[tuple[str, object]] = [
    ("envpack_version", 1),
    ("envpack_version", _DELETE),
    ("platform", None),
    ("platform", _DELETE),
    ("environment", ["default"]),
    ("lock_sha256", 5),
    ("virtual_packages", "__glibc"),
    ("virtual_packages", [1]),
    ("artifacts", {}),
    ("artifacts", _DELETE),
    ("artifacts", ["not an object"]),
    ("a.path", _DELETE),
    ("a.path", 7),
    ("a.kind", "npm"),
    ("a.kind", _DELETE),
    ("a.name", _DELETE),
    ("a.name", 3),
    ("a.version", None),
    ("a.sha256", _DELETE),
    ("a.sha256", None),
    ("a.sha256", "abc"),
    ("a.sha256", "A" * 64),
    ("a.sha256", "g" * 64),
    ("a.sha256", "a" * 65),
    ("a.size", _DELETE),
    ("a.size", -1),
    ("a.size", "12"),
    ("a.size", 1.5),
    ("a.size", True),
    ("a.md5", "xyz"),
    ("a.md5", 12),
    ("a.md5", "a" * 64),
]


@pytest.mark.parametrize(("key", "value"), MALFORMED, ids=[f"{k}={v!r}" for k, v in MALFORMED])
def test_malformed_field_is_refused(key: str, value: object) -> None:
    with pytest.raises(ArchiveError):
        _load(_set(_doc(), key, value))


@pytest.mark.parametrize("build", [123, ["h0"], {"a": 1}])
def test_non_string_build_is_refused(build: object) -> None:
    with pytest.raises(ArchiveError):
        _load(_set(_doc(), "a.build", build))


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[]", b"42", b'"text"', b"null"])
def test_not_a_json_object_is_refused(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        manifest_from_json(data)


def test_duplicate_artifact_paths_are_refused() -> None:
    doc = _doc()
    doc["artifacts"].append(copy.deepcopy(doc["artifacts"][0]))
    with pytest.raises(ArchiveError, match="twice"):
        _load(doc)


def test_deeply_nested_json_is_an_archive_error() -> None:
    with pytest.raises(ArchiveError):
        manifest_from_json(b"[" * 100_000 + b"]" * 100_000)


# --- paths ------------------------------------------------------------------------------------

ESCAPING = [
    ("conda", "channel/../etc/passwd"),
    ("conda", "channel/linux-64/../../x.conda"),
    ("conda", "channel/../../x.conda"),
    ("conda", "/channel/linux-64/x.conda"),
    ("conda", "/etc/passwd"),
    ("conda", "pypi/linux-64/x.conda"),
    ("conda", "other/linux-64/x.conda"),
    ("conda", "channel/x.conda"),
    ("conda", "channel/linux-64/sub/x.conda"),
    ("conda", "channel//x.conda"),
    ("conda", "channel/linux-64/"),
    ("conda", "channel/linux-64/x\\..\\y.conda"),
    ("conda", "channel/linux-64/x\x00.conda"),
    ("wheel", "pypi/../x.whl"),
    ("wheel", "pypi/.."),
    ("wheel", "/pypi/x.whl"),
    ("wheel", "channel/linux-64/x.whl"),
    ("wheel", "x.whl"),
    ("wheel", "pypi/sub/x.whl"),
    ("wheel", "pypi/"),
    ("wheel", ""),
]


@pytest.mark.parametrize(("kind", "path"), ESCAPING)
def test_escaping_artifact_path_is_refused(kind: str, path: str) -> None:
    doc = _doc()
    doc["artifacts"] = [{**doc["artifacts"][0], "kind": kind, "path": path}]
    with pytest.raises(ArchiveError):
        _load(doc)


@pytest.mark.parametrize(
    ("kind", "path"),
    [("conda", "channel/./x.conda"), ("wheel", "pypi/."), ("conda", "channel/linux-64/.")],
)
def test_dot_components_are_refused(kind: str, path: str) -> None:
    doc = _doc()
    doc["artifacts"] = [{**doc["artifacts"][0], "kind": kind, "path": path}]
    with pytest.raises(ArchiveError):
        _load(doc)


# --- fuzzing ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)

MANIFEST_KEYS = list(_doc())
ARTIFACT_KEYS = list(_doc()["artifacts"][0])


def _check_result(manifest: Manifest) -> None:
    # Whatever gets through must be safe to use as archive paths.
    for artifact in manifest.artifacts:
        parts = artifact.path.split("/")
        assert parts[0] in ("channel", "pypi")
        assert not artifact.path.startswith("/")
        assert ".." not in parts
        assert artifact.sha256 is not None and len(artifact.sha256) == 64
        assert isinstance(artifact.size, int) and artifact.size >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    with contextlib.suppress(EnvpackError):
        _check_result(manifest_from_json(data))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_json_values(value: object) -> None:
    with contextlib.suppress(EnvpackError):
        _check_result(_load(value))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MANIFEST_KEYS + [f"a.{k}" for k in ARTIFACT_KEYS]),
    json_values,
)
def test_fuzz_one_field_of_a_valid_manifest(key: str, value: object) -> None:
    with contextlib.suppress(EnvpackError):
        _check_result(_load(_set(_doc(), key, value)))


path_parts = st.sampled_from(["channel", "pypi", "linux-64", "noarch", "..", ".", "", "x.whl"])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["conda", "wheel"]),
    st.lists(path_parts | st.text(max_size=6), min_size=0, max_size=5).map("/".join),
)
def test_fuzz_artifact_paths(kind: str, path: str) -> None:
    doc = _doc()
    doc["artifacts"] = [{**doc["artifacts"][0], "kind": kind, "path": path}]
    with contextlib.suppress(ArchiveError):
        _check_result(_load(doc))


names = st.from_regex(r"[a-z0-9][a-z0-9_.+-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
md5s = st.none() | st.text("0123456789abcdef", min_size=32, max_size=32)


@st.composite
def artifacts(draw: st.DrawFn) -> Artifact:
    kind: ArtifactKind = draw(st.sampled_from(["conda", "wheel"]))
    return Artifact(
        kind=kind,
        name=draw(st.text(max_size=10)),
        version=draw(st.text(max_size=10)),
        build=draw(st.text(max_size=10)),
        filename=draw(names),
        subdir=draw(st.sampled_from(["linux-64", "noarch", "osx-arm64"]))
        if kind == "conda"
        else "",
        sha256=draw(hexes),
        md5=draw(md5s),
        size=draw(st.integers(min_value=0, max_value=2**53)),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(artifacts(), max_size=6, unique_by=lambda a: a.path),
    st.lists(st.text(max_size=15), max_size=4),
    st.text(max_size=10),
)
def test_round_trip_property(items: list[Artifact], vpkgs: list[str], env: str) -> None:
    manifest = _manifest(artifacts=tuple(items), virtual_packages=tuple(vpkgs), environment=env)
    assert manifest_from_json(manifest_to_json(manifest)) == manifest


# --- pixi-pack.json ---------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux-64", "linux-aarch64", "osx-arm64", "win-64"])
def test_pixi_pack_round_trip(platform: str) -> None:
    data = pixi_pack_json(platform)
    assert pixi_pack_platform(data) == platform
    doc = json.loads(data)
    # The interop contract (docs/architecture.md): version is the string "1", and these 3 keys.
    assert doc["version"] == "1"
    assert set(doc) == {"version", "pixi-pack-version", "platform"}
    assert isinstance(doc["pixi-pack-version"], str)


def test_pixi_pack_accepts_what_pixi_pack_writes() -> None:
    written_by_pixi_pack = b'{"version":"1","pixi-pack-version":"0.3.0","platform":"osx-arm64"}'
    assert pixi_pack_platform(written_by_pixi_pack) == "osx-arm64"


@pytest.mark.parametrize(
    "doc",
    [
        {"version": "2", "platform": "linux-64"},
        {"version": 1, "platform": "linux-64"},
        {"platform": "linux-64"},
    ],
)
def test_pixi_pack_unknown_version_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ArchiveError, match="version"):
        pixi_pack_platform(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "data", [b"", b"nope", b"[]", b'{"version": "1"}', b'{"version": "1", "platform": 3}']
)
def test_pixi_pack_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        pixi_pack_platform(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_pixi_pack(data: bytes) -> None:
    with contextlib.suppress(EnvpackError):
        assert isinstance(pixi_pack_platform(data), str)


def test_pixi_pack_deeply_nested_json_is_an_archive_error() -> None:
    with pytest.raises(ArchiveError):
        pixi_pack_platform(b"[" * 100_000 + b"]" * 100_000)

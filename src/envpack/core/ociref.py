"""`oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]` and the names an envpack artifact uses.

Pure: no network, no third-party import, so both programs (and `--help`) can parse a
reference without loading a registry client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envpack.core.errors import UsageError

SCHEME = "oci://"
# The envpack.json config says what the artifact is: a registry UI and `oras discover`
# show it, and a pull refuses any other type before it fetches a layer.
ENV_ARTIFACT_TYPE = "application/vnd.envpack.env.v1+json"
MEDIA_TYPES = {
    ".conda": "application/vnd.conda.package.v2",  # the CEP's types for conda packages
    ".tar.bz2": "application/vnd.conda.package.v1",
    ".whl": "application/vnd.envpack.wheel.v1",
    ".json": "application/json",
}
OTHER_MEDIA_TYPE = "application/octet-stream"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
TITLE = "org.opencontainers.image.title"  # a layer's member path, as oras names files
PLATFORM_KEY = "org.conda.platform"  # on the manifest: checked before any blob is fetched
ENVIRONMENT_KEY = "dev.envpack.environment"
LOCK_KEY = "dev.envpack.lock.sha256"

# Docker's reference grammar, reduced to what a registry URL needs.
_HOST = r"(?P<host>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)"
_REPO = (
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
)
_TAG = r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
_DIGEST = r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
_REFERENCE = re.compile(f"{_HOST}/{_REPO}{_TAG}{_DIGEST}")


@dataclass(frozen=True)
class OciRef:
    host: str  # with the port, as registries and ~/.docker/config.json name it
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What the manifest URL ends with: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else ""
        tag = f":{self.tag}" if self.tag else ""
        return f"{SCHEME}{self.host}/{self.repository}{tag}{at}"


def is_oci(text: str | None) -> bool:
    return text is not None and text.startswith(SCHEME)


def parse_ref(text: str) -> OciRef:
    """An oci:// reference, or a UsageError naming the expected shape."""
    match = _REFERENCE.fullmatch(text.removeprefix(SCHEME)) if is_oci(text) else None
    if match is None:
        raise UsageError(
            f"invalid registry reference {_masked(text)!r}: expected "
            "oci://HOST[:PORT]/REPOSITORY[:TAG] (lower-case repository, e.g. "
            "oci://registry.example.com/team/env:v1)"
        )
    tag, digest = match["tag"], match["digest"]
    return OciRef(match["host"], match["repo"], tag if tag or digest else "latest", digest)


def media_type(path: str) -> str:
    for suffix, media in MEDIA_TYPES.items():
        if path.endswith(suffix):
            return media
    return OTHER_MEDIA_TYPE


def _masked(text: str) -> str:
    # A reference is no place for a password, but one typed there must not be echoed.
    return re.sub(r"(?<=://)[^/@]*@", "***@", text)

"""One OCI registry session through oras-py: credentials, the auth challenge, blobs in and out.

oras-py speaks the protocol (HEAD, upload sessions, the bearer-token dance); this module picks
its auth backend from the registry's challenge, feeds it docker's credential files, and turns
what goes wrong into one line without a secret in it. oras is imported here only, and only
when a registry is used, so `--help` and file unpacks never load it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envpack.core.errors import EnvpackError, RegistryError
from envpack.core.layout import CHUNK
from envpack.core.ociref import OciRef
from envpack.core.progress import Bar, Reporter

MANIFEST_LIMIT = 4 << 20  # distribution refuses manifests over 4 MiB itself
CHUNKED_ABOVE = 64 << 20  # oras's one-PUT upload holds the blob in memory: stream big ones
_CONNECT = (10, 60)  # seconds: the first contact fails fast instead of hanging
LOGIN_HINT = "log in with `docker login HOST` or point REGISTRY_AUTH_FILE at an auth.json"


@dataclass
class Traffic:
    """What crossed the wire, for the report and the tests."""

    downloaded: int = 0
    uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_present: int = 0


def credential_files() -> list[str]:
    """podman/skopeo's REGISTRY_AUTH_FILE and $DOCKER_CONFIG/config.json; oras-py itself
    always adds ~/.docker/config.json."""
    found = [os.environ.get("REGISTRY_AUTH_FILE", "")]
    if os.environ.get("DOCKER_CONFIG"):
        found.append(str(Path(os.environ["DOCKER_CONFIG"]) / "config.json"))
    return [f for f in found if f and Path(f).is_file()]


class Registry:
    """A session with the registry of `ref`, authenticated as its challenge asks."""

    def __init__(self, ref: OciRef, *, insecure: bool, reporter: Reporter) -> None:
        try:
            # Here, on first use: envunpack's --help and file unpacks never load oras. The
            # frozen build leaves it out (pyproject's banned-api table, which its spec reads).
            import oras.auth  # noqa: TID251
            import oras.auth.utils  # noqa: TID251
            import oras.logger  # noqa: TID251
            import oras.provider  # noqa: TID251
            import requests
        except ImportError:
            raise RegistryError(
                "this envunpack was built without registry support; pull with the envpack "
                "Python package, or unpack a file made by `envpack -o env.tar`"
            ) from None
        self.ref = ref
        self.reporter = reporter
        self.traffic = Traffic()
        self._requests = requests
        # oras logs through its own handler to stderr; its warnings go through ours.
        oras.logger.logger.log_handler = [lambda msg: _forward(msg, reporter)]
        self._oras: Any = oras.provider.Registry(
            hostname=ref.host, insecure=insecure, auth_backend="basic"
        )
        self._container: Any = self._oras.get_container(
            f"{ref.host}/{ref.repository}:{ref.tag or 'latest'}"
        )
        with self.errors("reading credentials for"):
            self._oras.auth.load_configs(self._container, configs=credential_files())
        self._scheme = "http" if insecure else "https"
        self._bearer = False  # the registry hands out scoped tokens
        self._push_scope = False  # the token we hold allows pushing
        self._login(oras.auth, insecure)

    @property
    def where(self) -> str:
        return f"{self.ref.host}/{self.ref.repository}"

    def _login(self, auth: Any, insecure: bool) -> None:
        """Ask /v2/ which challenge this registry uses and answer it the way it asks."""
        basic = getattr(self._oras.auth, "_basic_auth", None)
        # Always set: oras-py's basic backend answers a later 401/403 from it, and without
        # it raises an AttributeError that its retry loop would sleep on for minutes.
        self._oras.auth._basic_auth = basic
        challenge = self._ping().headers.get("Www-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            # The token backend trades the basic credentials for a bearer token per scope.
            self._oras.auth = auth.get_auth_backend(
                "token", self._oras.session, insecure, tls_verify=True
            )
            self._oras.auth._basic_auth = basic
            self._bearer = True
            # One token now, through oras-py's own request: bad credentials fail here in
            # one line, not in its retry loop. Not kept: it has no repository scope, and
            # oras-py would resend it; each scope's challenge fetches its own.
            parsed = auth.utils.parse_auth_header(challenge)
            with self.errors("logging in to"):
                token = self._oras.auth.request_token(parsed)
            if not token:
                said = "refused the credentials" if basic else "needs credentials"
                hint = LOGIN_HINT.replace("HOST", self.ref.host)
                raise RegistryError(f"registry {self.ref.host} {said} (token denied); {hint}")
            self._oras.auth.token = None
        elif challenge:
            if not basic:
                raise RegistryError(
                    f"registry {self.ref.host} needs credentials (401); "
                    + LOGIN_HINT.replace("HOST", self.ref.host)
                )
            # Sent up front: the registry's early 401 to a bare blob PUT cuts the body short.
            self._oras.session.headers["Authorization"] = f"Basic {basic}"
            if self._ping().status_code == 401:
                raise RegistryError(
                    f"registry {self.ref.host} refused the credentials (401); "
                    + LOGIN_HINT.replace("HOST", self.ref.host)
                )

    def _ping(self) -> Any:
        url = f"{self._scheme}://{self.ref.host}/v2/"
        with self.errors("reaching"):
            response = self._oras.session.get(url, timeout=_CONNECT)
        if response.status_code == 403:
            self.check(response, "at /v2/")
        if response.status_code not in (200, 401):
            raise RegistryError(
                f"{self.ref.host} answered {response.status_code} at /v2/: not an OCI "
                "registry, or a plain-HTTP/HTTPS mix-up (plain HTTP needs --insecure)"
            )
        return response

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """requests' and oras' exceptions as one line, with no URL credentials in it."""
        req = self._requests.exceptions
        try:
            yield
        except EnvpackError:
            raise
        except req.SSLError as exc:
            raise RegistryError(
                f"TLS failed {doing} {self.ref.host}: {_short(exc)} (a plain-HTTP registry "
                "needs --insecure; a private CA needs REQUESTS_CA_BUNDLE)"
            ) from None
        except (req.ConnectionError, req.Timeout) as exc:
            raise RegistryError(
                f"cannot reach the registry {self.ref.host} ({doing} it): {_short(exc)}; "
                "check the host and port"
            ) from None
        except (req.RequestException, ValueError, KeyError, TypeError, AttributeError,
                OSError) as exc:  # fmt: skip
            raise RegistryError(f"failed {doing} {self.where}: {_short(exc)}") from None

    def check(self, response: Any, what: str) -> None:
        code = response.status_code
        if code in (200, 201, 202):
            return
        if code in (401, 403):
            raise RegistryError(
                f"registry {self.ref.host} denied access to {self.ref.repository} ({code}) "
                f"{what}; " + LOGIN_HINT.replace("HOST", self.ref.host)
            )
        if code == 404 and what.startswith("the manifest "):
            raise RegistryError(
                f"{self.where} has no tag or digest {what.split()[-1]!r} (404); check the reference"
            )
        raise RegistryError(f"registry {self.where} answered {code} for {what}")

    def _url(self, kind: str, reference: str) -> str:
        return f"{self._scheme}://{self.ref.host}/v2/{self.ref.repository}/{kind}/{reference}"

    def get_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        """(media type, exact bytes) of a manifest, so its digest can be checked and kept."""
        with self.errors("fetching the manifest from"):
            response = self._oras.do_request(
                self._url("manifests", reference), "GET", headers={"Accept": ", ".join(accept)}
            )
            self.check(response, f"the manifest {reference}")
            data = response.content
        if len(data) > MANIFEST_LIMIT:
            raise RegistryError(f"{self.where}: the manifest is implausibly large")
        if reference.startswith("sha256:") and _sha256(data) != reference:
            raise RegistryError(f"{self.where}: the manifest does not match its digest")
        return response.headers.get("Content-Type", "").split(";")[0], data

    def find_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes] | None:
        """Like get_manifest, with None for a tag that does not exist (yet)."""
        with self.errors("fetching the manifest from"):
            response = self._oras.do_request(
                self._url("manifests", reference), "HEAD", headers={"Accept": ", ".join(accept)}
            )
        if response.status_code == 404:
            return None
        return self.get_manifest(reference, accept)

    def put_manifest(self, data: bytes, media: str, tag: str) -> str:
        """PUT the exact bytes (not re-serialised: the digest is theirs); returns the digest."""
        with self.errors("pushing the manifest to"):
            response = self._oras.do_request(
                self._url("manifests", tag), "PUT", data=data, headers={"Content-Type": media}
            )
            self.check(response, "the upload of the manifest")
        return _sha256(data)

    def fetch_blob(self, digest: str, size: int, dest: Path, bar: Bar | None = None) -> None:
        """Stream one blob to `dest`, verified; `dest` appears only if its bytes are right."""
        # Per process: two envunpacks sharing a --cache never write into one file.
        part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
        try:
            sha, got = self._stream(digest, size, part, bar)
        except BaseException:  # a failure or Ctrl-C mid-blob leaves no partial file behind
            part.unlink(missing_ok=True)
            raise
        self.traffic.downloaded += got
        if got != size or f"sha256:{sha.hexdigest()}" != digest:
            part.unlink(missing_ok=True)
            raise RegistryError(
                f"{self.where} served wrong bytes for blob {digest} (got sha256:"
                f"{sha.hexdigest()}, {got} bytes); the registry's copy is corrupt or was "
                "tampered with"
            )
        part.replace(dest)

    def _stream(self, digest: str, size: int, part: Path, bar: Bar | None) -> tuple[Any, int]:
        sha = hashlib.sha256()
        got = 0
        with self.errors("fetching a blob from"):
            response = self._oras.get_blob(self._container, digest, stream=True)
            with response:
                self.check(response, f"blob {digest}")
                with part.open("wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        got += len(chunk)
                        if got > size:
                            break  # more than promised: refused below, never stored whole
                        sha.update(chunk)
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
        return sha, got

    def push_blob(self, path: Path, digest: str, media: str) -> bool:
        """Upload `path` unless the registry has it (HEAD first); True if it was sent."""
        size = path.stat().st_size
        layer: dict[str, Any] = {"mediaType": media, "digest": digest, "size": size}
        with self.errors("pushing a blob to"):
            if self._oras.blob_exists(layer, self._container):
                self.traffic.blobs_present += 1
                return False
            if self._bearer and not self._push_scope:
                # oras-py answers a 401 by resending the token it has, which only a new
                # token can fix when the first one was for pulling: drop it, and the
                # upload's own challenge (pull,push) gets one.
                self._oras.auth.token = None
            if size > CHUNKED_ABOVE:
                response = self._oras.chunked_upload(str(path), self._container, layer)
            else:
                response = self._oras.put_upload(str(path), self._container, layer)
            self.check(response, f"the upload of blob {digest}")
        self._push_scope = True
        self.traffic.uploaded += size
        self.traffic.blobs_uploaded += 1
        return True


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _short(exc: BaseException) -> str:
    """A requests/oras error as a short clause: the OS reason if there is one, with any
    user:password@ masked."""
    text = " ".join(str(exc).split())
    errno_reason = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno_reason:
        text = errno_reason.group(0)
    elif len(text) > 160:
        text = text[:157] + "..."
    return _USERINFO.sub("***@", text)


def _forward(msg: dict[str, Any], reporter: Reporter) -> None:
    if msg.get("level") == "warning":
        reporter.warn(f"oras: {_USERINFO.sub('***@', str(msg.get('msg')))}")

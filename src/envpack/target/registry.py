"""One OCI registry session through python-dxf: the login, the auth challenge, blobs fetched.

dxf speaks the protocol (HEAD, upload sessions, basic and bearer challenges, a blob's digest
checked as it streams); this module hands it docker's logins (dockerauth.py), asks for the
token scope each request needs, and turns what goes wrong into one line without a secret in
it. dxf and requests load on first use only: `--help` and file unpacks never pay for them.
Manifests go through DXF._request (all dxf calls do, auth retry included): its manifest
methods fix the Accept list. Writing is packer/registrypush.py's, outside the frozen binary.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn, cast

from envpack.core.errors import EnvpackError, RegistryError
from envpack.core.layout import CHUNK
from envpack.core.ociref import OciRef
from envpack.core.progress import Bar, Reporter
from envpack.target.credhelper import ask_helper
from envpack.target.dockerauth import Helper, Login, credential_files, find_login

__all__ = ["LOGIN_HINT", "Registry", "Traffic", "credential_files"]

MANIFEST_LIMIT = 4 << 20  # distribution refuses manifests over 4 MiB itself
# (connect, read) seconds: a first contact fails fast; a registry may take a while to
# answer the PUT that closes a large upload.
_TIMEOUT = (10, 300)
LOGIN_HINT = "log in with `docker login HOST` or point REGISTRY_AUTH_FILE at an auth.json"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Traffic:
    """What crossed the wire, for the report and the tests (a push's: packer/registrypush)."""

    downloaded: int = 0


class Registry:
    """A session with the registry of `ref`, authenticated as its challenge asks."""

    def __init__(self, ref: OciRef, *, insecure: bool, reporter: Reporter) -> None:
        try:
            # Here, on first use: envunpack's --help and file unpacks never load dxf.
            with warnings.catch_warnings():
                # requests warns when no charset detector is installed; we read bytes, never
                # .text, so a frozen build may leave charset_normalizer out.
                warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
                import dxf
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
        self._dxf_errors = dxf.exceptions
        self._insecure = insecure
        # dxf hands `timeout` to requests as it is, which takes (connect, read).
        timeout = cast(float, _TIMEOUT)
        self._dxf: Any = dxf.DXF(
            ref.host, ref.repository, auth=self._answer, insecure=insecure, timeout=timeout
        )
        # One requests session for the whole run, so blob after blob reuses the connection.
        self._dxf.__enter__()
        self._first_contact()

    @property
    def where(self) -> str:
        return f"{self.ref.host}/{self.ref.repository}"

    @cached_property
    def _login(self) -> Login | None:
        """Read when the registry first asks: an anonymous pull never opens an auth file,
        nor runs a credential helper."""
        found = find_login(self.ref.host)
        return ask_helper(found, self.ref.host) if isinstance(found, Helper) else found

    def _hint(self) -> str:
        return LOGIN_HINT.replace("HOST", self.ref.host)

    def _first_contact(self) -> None:
        """GET /v2/: a wrong host, scheme or login fails here, at once, in one line."""
        with self.errors("reaching", "at /v2/"):
            try:
                self._dxf.api_version_check()
            except self._dxf_errors.DXFUnauthorizedError:
                said = "refused the credentials" if self._login else "needs credentials"
                raise RegistryError(
                    f"registry {self.ref.host} {said} (401); {self._hint()}"
                ) from None
            except self._requests.HTTPError as exc:
                code = getattr(exc.response, "status_code", 0)
                if code not in (401, 403):
                    raise RegistryError(
                        f"{self.ref.host} answered {code} at /v2/: not an OCI registry, or a "
                        "plain-HTTP/HTTPS mix-up (plain HTTP needs --insecure)"
                    ) from None
                raise

    def _answer(self, session: Any, response: Any) -> None:
        """dxf's auth callback, on any 401: answer the challenge with the login, asking a
        token server for the challenge's scope, else pull, or pull,push for a write."""
        challenge = response.headers.get("Www-Authenticate", "")
        bearer = challenge.lower().startswith("bearer")
        if not bearer and self._login is None:
            raise RegistryError(f"registry {self.ref.host} needs credentials (401); {self._hint()}")
        method = str(getattr(response.request, "method", "GET")).upper()
        actions: list[str] | None = ["pull", "push"] if method in _WRITES else ["pull"]
        if 'scope="' in challenge:  # what the registry asks for; a mount's names its source too
            actions = None
        user = self._login.username if self._login else None
        password = self._login.password if self._login else None
        # dxf refuses any login over plain HTTP; --insecure is the user saying this registry
        # is plain HTTP, and docker sends the login to such a registry too.
        session._insecure = False
        try:
            session.authenticate(user, password, actions=actions, response=response)
        except (self._requests.ConnectionError, self._requests.Timeout) as exc:
            raise RegistryError(
                f"cannot get a token for {self.ref.host} from its token server (python-dxf "
                f"asks over HTTPS only): {_short(exc)}; a private CA needs REQUESTS_CA_BUNDLE"
            ) from None
        except (self._dxf_errors.DXFUnauthorizedError, self._requests.HTTPError) as exc:
            code = getattr(getattr(exc, "response", None), "status_code", 401)
            if code not in (401, 403):
                raise
            said = "refused the credentials" if self._login else "needs credentials"
            raise RegistryError(
                f"registry {self.ref.host} {said} (token denied); {self._hint()}"
            ) from None
        finally:
            session._insecure = self._insecure

    @contextmanager
    def errors(self, doing: str, what: str = "") -> Iterator[None]:
        """requests' and dxf's exceptions as one line, with no URL credentials in it."""
        req = self._requests.exceptions
        what = what or f"while {doing} it"
        try:
            yield
        except EnvpackError:
            raise
        except self._dxf_errors.DXFUnauthorizedError:
            self._refused(401, what)
        except req.HTTPError as exc:
            if exc.response is None:
                raise RegistryError(f"failed {doing} {self.where}: {_short(exc)}") from None
            self._refused(exc.response.status_code, what)
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
        except (req.RequestException, self._dxf_errors.DXFError, ValueError, KeyError,
                TypeError, OSError) as exc:  # fmt: skip
            raise RegistryError(f"failed {doing} {self.where}: {_short(exc)}") from None

    def _refused(self, code: int, what: str) -> NoReturn:
        """A status that is not success, as the one line it deserves."""
        if code in (401, 403):
            raise RegistryError(
                f"registry {self.ref.host} denied access to {self.ref.repository} ({code}) "
                f"{what}; {self._hint()}"
            )
        if code == 404 and what.startswith("the manifest "):
            raise RegistryError(
                f"{self.where} has no tag or digest {what.split()[-1]!r} (404); check the reference"
            )
        raise RegistryError(f"registry {self.where} answered {code} for {what}")

    def get_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        """(media type, exact bytes) of a manifest, so its digest can be checked and kept."""
        with self.errors("fetching the manifest from", f"the manifest {reference}"):
            response = self._dxf._request(
                "get", f"manifests/{reference}", headers={"Accept": ", ".join(accept)}
            )
            data = bytes(response.content)
        if len(data) > MANIFEST_LIMIT:
            raise RegistryError(f"{self.where}: the manifest is implausibly large")
        if reference.startswith("sha256:") and _sha256(data) != reference:
            raise RegistryError(f"{self.where}: the manifest does not match its digest")
        return str(response.headers.get("Content-Type", "")).split(";")[0], data

    def fetch_blob(self, digest: str, size: int, dest: Path, bar: Bar | None = None) -> None:
        """Stream one blob to `dest`, verified; `dest` appears only if its bytes are right."""
        # Per process: two envunpacks sharing a --cache never write into one file.
        part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
        try:
            self._stream(digest, size, part, bar)
        except BaseException:  # a failure or Ctrl-C mid-blob leaves no partial file behind
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)

    def _stream(self, digest: str, size: int, part: Path, bar: Bar | None) -> None:
        got = 0
        with self.errors("fetching a blob from", f"blob {digest}"), part.open("wb") as out:
            try:
                # dxf hashes the stream and raises at its end if the digest is wrong.
                for chunk in self._dxf.pull_blob(digest, chunk_size=CHUNK):
                    got += len(chunk)
                    self.traffic.downloaded += len(chunk)
                    if got > size:  # more than promised: cut off, never stored whole
                        break
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            except self._dxf_errors.DXFDigestMismatchError as exc:
                self._wrong(digest, f"{exc.got}, {got} bytes")
        if got != size:
            self._wrong(digest, f"{'over ' if got > size else ''}{got} bytes, not {size}")

    def _wrong(self, digest: str, got: str) -> NoReturn:
        raise RegistryError(
            f"{self.where} served wrong bytes for blob {digest} (got {got}); the registry's "
            "copy is corrupt or was tampered with"
        )


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _short(exc: BaseException) -> str:
    """A requests/dxf error as a short clause: the OS or TLS reason if there is one, with any
    user:password@ masked."""
    text = " ".join(str(exc).split())
    reason = re.search(r"\[(?:Errno -?\d+|SSL: \w+)\] [^'\")(]+", text)
    if reason:
        text = reason.group(0).strip()
    elif len(text) > 160:
        text = text[:157] + "..."
    return _USERINFO.sub("***@", text)

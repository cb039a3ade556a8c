"""Give rattler a CA bundle on hosts that have none.

`rattler.install` panics ("No CA certificates were loaded") on a system without CA
certificates, even when it only reads local files (docs/architecture.md, "Facts"). Bare
targets such as a minbase Debian or an empty root have none, so we point `SSL_CERT_FILE`
at the bundled certifi file before rattler is imported. A host that has its own CAs keeps
them.
"""

import importlib.util
import os
from collections.abc import MutableMapping
from pathlib import Path

from envpack.target.runtime import bundle_dir

# The bundle files rattler's TLS stack (openssl-probe / rustls-native-certs) looks for.
SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)
# Where the frozen build puts certifi's file, relative to the bundle root.
BUNDLED_CA_PATH = "certifi/cacert.pem"


def _nonempty_file(path: str | Path) -> bool:
    try:
        return Path(path).stat().st_size > 0
    except OSError:
        return False


def bundled_ca_file() -> Path | None:
    """certifi's CA file: from the frozen bundle, else from an installed certifi, else None."""
    bundle = bundle_dir()
    if bundle is not None:
        path = bundle / BUNDLED_CA_PATH
        return path if _nonempty_file(path) else None
    # find_spec, not import: we want the file only, and certifi is not a declared dependency.
    spec = importlib.util.find_spec("certifi")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).with_name("cacert.pem")
    return path if _nonempty_file(path) else None


def host_has_ca_certificates(environ: MutableMapping[str, str]) -> bool:
    """True when `SSL_CERT_FILE` or one of the usual bundle files holds certificates."""
    configured = environ.get("SSL_CERT_FILE")
    if configured and _nonempty_file(configured):
        return True
    return any(_nonempty_file(path) for path in SYSTEM_CA_FILES)


def ensure_ca_certificates(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Set `SSL_CERT_FILE` to the bundled CA file if the host has none; return what was set.

    Call before importing rattler: its TLS roots are read when its HTTP client is built.
    """
    env = os.environ if environ is None else environ
    if host_has_ca_certificates(env):
        return None
    bundled = bundled_ca_file()
    if bundled is not None:
        env["SSL_CERT_FILE"] = str(bundled)
    return bundled

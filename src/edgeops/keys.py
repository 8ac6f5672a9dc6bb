"""Signing keys for bundles: ed25519, created outside the repository, private key mode 0600.

The private key signs ``manifest.json`` on the training host; devices get only the public key.
Default key directory: ``$EDGEOPS_KEY_DIR``, else ``~/.config/edgeops/keys``.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeops import atomic
from edgeops.errors import EdgeopsError

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


def default_key_dir() -> Path:
    """``$EDGEOPS_KEY_DIR`` or ``~/.config/edgeops/keys``."""
    env = os.environ.get("EDGEOPS_KEY_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "edgeops" / "keys"


def init_keys(key_dir: Path | None = None, force: bool = False) -> tuple[Path, Path]:
    """Create an ed25519 key pair in ``key_dir``; refuse to overwrite one unless ``force``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_dir = Path(key_dir or default_key_dir())
    private, public = key_dir / PRIVATE_NAME, key_dir / PUBLIC_NAME
    if private.exists() and not force:
        raise EdgeopsError(
            f"a signing key already exists at {private}",
            fix="use it, or pass --force to replace it (bundles signed with the old key will "
            "no longer verify against the new public key)",
        )
    _refuse_inside_git_repo(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with atomic.atomic_path(private) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(pem)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic.write_bytes(public, pub)
    return private, public


def load_private_key(path: Path | None = None):  # -> Ed25519PrivateKey
    """Load the signing key, with an error that says how to create one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path or default_key_dir() / PRIVATE_NAME)
    if not path.is_file():
        raise EdgeopsError(
            f"no signing key at {path}", fix="run `edgeops keys init` (or set EDGEOPS_KEY_DIR)"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise EdgeopsError(
            f"signing key {path} is readable by others (mode {mode:o})", fix=f"chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise EdgeopsError(
            f"{path} is not a PEM private key: {exc}", fix="run `edgeops keys init --force`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeopsError(f"{path} is not an ed25519 key", fix="run `edgeops keys init --force`")
    return key


def _refuse_inside_git_repo(key_dir: Path) -> None:
    """The private key never lives in git: refuse a key directory inside a work tree."""
    here = key_dir.resolve()
    for parent in (here, *here.parents):
        if (parent / ".git").exists():
            raise EdgeopsError(
                f"{key_dir} is inside the git work tree {parent}: the private key must never be "
                "committed",
                fix="choose a directory outside the repository (default ~/.config/edgeops/keys)",
            )

"""Master keys and AES-256-GCM encryption of connection secrets at rest.

Threat model. Connection secrets (API keys, passwords, OAuth client secrets) live in the database,
so this module defends against:

- a leaked database file or backup: secrets are AES-256-GCM ciphertexts under master keys that
  never enter the database (they come from ``CALLOUT_MASTER_KEYS`` or a 0600 key file);
- a ciphertext copied from one org, connection or field into another (a confused deputy): the
  associated data binds every ciphertext to its org, connection, field and key id, so a moved
  value fails to decrypt instead of being sent to the wrong API;
- a tampered ciphertext, nonce or key id: GCM's tag fails and ``DecryptionFailed`` is raised;
- losing secrets during master-key rotation: the key file is replaced atomically and keeps every
  old key until the operator explicitly drops it;
- a forged integrity record (the audit log's signed head): ``KeyRing.sign`` is an HMAC-SHA256
  under a key derived from a master key for one purpose only, so whoever can write the database
  but not read the key source cannot produce a valid signature.

It does not defend against an attacker who can read the process memory or the key source.
Messages never contain key material or plaintext; ``MasterKey``'s repr hides the key. Nonces are
96 random bits, safe for far more than the 2**32 seals per key NIST SP 800-38D allows.

    CalloutError
    └── CryptoError            code "crypto_error"
        ├── MissingMasterKey   code "missing_master_key": run `callout init` or set the env var
        └── DecryptionFailed   code "decryption_failed": wrong key, wrong binding or tampering

Key rotation (the storage layer runs the row loop of step 3):

1. ``rotation_plan(ring)`` generates a new key and a ring with it as primary plus all old keys.
2. ``write_key_file`` (or the new ``CALLOUT_MASTER_KEYS`` value) installs that ring atomically.
   From then on new writes use the new key and every existing row stays readable. Every process
   that decrypts must hold the new key before any row uses it: with several replicas, or a server
   running while the CLI rotates, first roll out ``ring.with_key(new_key)`` (decrypt-only), then
   the new-primary ring. ``DecryptionFailed.key_id`` names an unknown key, so a process may reload
   its ring once and retry.
3. Reseal rows one at a time with ``KeyRing.reseal``, each row update in its own transaction. A
   crash leaves a mix of old-key and new-key rows, all readable because the ring holds both;
   running the loop again finishes the job.
4. Only after no row names an old key may ``KeyRing.without`` drop it: a separate, explicit step.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from callout.errors import CalloutError

__all__ = [
    "ENV_VAR",
    "CryptoError",
    "DecryptionFailed",
    "KeyRing",
    "MasterKey",
    "MissingMasterKey",
    "Sealed",
    "SecretBinding",
    "create_key_file",
    "load_key_ring",
    "rotation_plan",
    "write_key_file",
]

ENV_VAR = "CALLOUT_MASTER_KEYS"
KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # the GCM standard nonce; random per encryption
TAG_SIZE = 16
FORMAT_VERSION = "v1"
_AD_LABEL = b"callout/secret/" + FORMAT_VERSION.encode()
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class CryptoError(CalloutError):
    """A secret could not be sealed or opened, or the master keys are unusable."""

    code = "crypto_error"

    def __init__(self, message: str, *, code: str | None = None, key_id: str | None = None) -> None:
        super().__init__(message, code=code)
        #: The master key id involved, when one is (ids are not secret).
        self.key_id = key_id


class MissingMasterKey(CryptoError):
    """No master key is configured: the service refuses to start."""

    code = "missing_master_key"


class DecryptionFailed(CryptoError):
    """A sealed secret did not open: wrong key, wrong binding, tampered or malformed."""

    code = "decryption_failed"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class MasterKey:
    """One AES-256 master key.

    ``key_id`` names it in every sealed value (so the ring knows which key opens it); ``key`` is
    32 random bytes and never appears in ``repr()``.
    """

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise ValueError("a master key id must be 1-32 characters of A-Z a-z 0-9 _ -")
        if not isinstance(self.key, bytes) or len(self.key) != KEY_SIZE:
            raise ValueError(f"master key {self.key_id!r} must be {KEY_SIZE} bytes")

    @classmethod
    def generate(cls, key_id: str | None = None) -> MasterKey:
        """A fresh random key; the default id sorts by creation: ``k20261129T020300Z-3f9a``."""
        if key_id is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            key_id = f"k{stamp}-{secrets.token_hex(6)}"  # 48 random bits: no collisions
        return cls(key_id, os.urandom(KEY_SIZE))


@dataclass(frozen=True)
class SecretBinding:
    """What a ciphertext is bound to: it opens only for the same org, connection and field."""

    org_id: str
    connection_id: str
    field: str

    def __post_init__(self) -> None:
        for name in ("org_id", "connection_id", "field"):
            if not getattr(self, name):
                raise ValueError(f"SecretBinding.{name} must be a non-empty string")

    def associated_data(self, key_id: str) -> bytes:
        """The GCM associated data: version, org, connection, field and key id, length-prefixed."""
        parts = (
            _AD_LABEL,
            self.org_id.encode(),
            self.connection_id.encode(),
            self.field.encode(),
            key_id.encode(),
        )
        return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass(frozen=True)
class Sealed:
    """One encrypted secret as stored: key id, 12-byte nonce, ciphertext with its GCM tag."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise DecryptionFailed("malformed sealed secret: bad key id")
        if not isinstance(self.nonce, bytes) or not isinstance(self.ciphertext, bytes):
            raise DecryptionFailed("malformed sealed secret: nonce and ciphertext must be bytes")
        if len(self.nonce) != NONCE_SIZE or len(self.ciphertext) < TAG_SIZE:
            raise DecryptionFailed("malformed sealed secret: nonce or ciphertext is too short")

    def to_text(self) -> str:
        """The ASCII form for a TEXT column: ``v1.<key_id>.<b64url nonce>.<b64url ciphertext>``."""
        return f"{FORMAT_VERSION}.{self.key_id}.{_b64url(self.nonce)}.{_b64url(self.ciphertext)}"

    @classmethod
    def from_text(cls, text: str) -> Sealed:
        """Parse ``to_text()``'s form; anything else raises ``DecryptionFailed``."""
        parts = text.split(".") if isinstance(text, str) else []
        if len(parts) != 4 or parts[0] != FORMAT_VERSION:
            raise DecryptionFailed(f"malformed sealed secret: expected '{FORMAT_VERSION}.' form")
        try:
            nonce, ciphertext = _unb64url(parts[2]), _unb64url(parts[3])
        except (ValueError, binascii.Error):
            raise DecryptionFailed("malformed sealed secret: bad base64") from None
        return cls(parts[1], nonce, ciphertext)


class KeyRing:
    """The master keys this process knows: one primary (encrypts), all (decrypt)."""

    def __init__(self, keys: Sequence[MasterKey], primary_id: str | None = None) -> None:
        if not keys:
            raise MissingMasterKey(_missing_message())
        by_id: dict[str, MasterKey] = {}
        for key in keys:
            if key.key_id in by_id:
                raise ValueError(f"duplicate master key id {key.key_id!r}")
            by_id[key.key_id] = key
        primary_id = keys[0].key_id if primary_id is None else primary_id
        if primary_id not in by_id:
            raise ValueError(f"primary key id {primary_id!r} is not in the key ring")
        self._primary = by_id[primary_id]
        # Primary first, then the others in the order given: the serialised order.
        self._keys = {primary_id: self._primary} | by_id
        self._aead = {kid: AESGCM(k.key) for kid, k in self._keys.items()}

    def __repr__(self) -> str:
        return f"KeyRing(primary={self._primary.key_id!r}, key_ids={self.key_ids()!r})"

    @property
    def primary(self) -> MasterKey:
        """The key every new seal uses."""
        return self._primary

    def key_ids(self) -> tuple[str, ...]:
        """Every key id, primary first."""
        return tuple(self._keys)

    def seal(self, plaintext: str, binding: SecretBinding) -> Sealed:
        """Encrypt with the primary key and a fresh random nonce, bound to ``binding``."""
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            # The codec's message quotes the offending character: part of the secret.
            raise CryptoError("a secret must be valid Unicode text (no lone surrogates)") from None
        kid = self._primary.key_id
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._aead[kid].encrypt(nonce, data, binding.associated_data(kid))
        return Sealed(kid, nonce, ciphertext)

    def open(self, sealed: Sealed, binding: SecretBinding) -> str:
        """Decrypt with the key ``sealed`` names; any mismatch raises ``DecryptionFailed``."""
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise DecryptionFailed(
                f"master key {sealed.key_id!r} is not in the key ring (knows "
                f"{', '.join(self.key_ids())}); add it back to {ENV_VAR} or the key file",
                key_id=sealed.key_id,
            )
        try:
            data = aead.decrypt(
                sealed.nonce, sealed.ciphertext, binding.associated_data(sealed.key_id)
            )
            return data.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise DecryptionFailed(
                f"secret {binding.field!r} of connection {binding.connection_id!r} did not decrypt "
                f"with master key {sealed.key_id!r}: wrong key, a value copied from another "
                "org, connection or field, or tampered data; set the secret again",
                key_id=sealed.key_id,
            ) from None

    def sign(self, purpose: str, message: bytes) -> tuple[str, str]:
        """(the primary's key id, the hex HMAC-SHA256 of ``message``) under a key derived from
        the primary for ``purpose`` alone, so a signature never doubles as an encryption key."""
        kid = self._primary.key_id
        return kid, hmac.new(self._mac_key(kid, purpose), message, "sha256").hexdigest()

    def verify_signature(self, purpose: str, message: bytes, key_id: str, signature: str) -> bool:
        """Whether ``signature`` is ``sign(purpose, message)`` under key ``key_id`` (False when
        the ring does not hold that key: ``key_ids()`` tells the two apart)."""
        if key_id not in self._keys:
            return False
        expected = hmac.new(self._mac_key(key_id, purpose), message, "sha256").hexdigest()
        return hmac.compare_digest(expected, signature)

    def _mac_key(self, key_id: str, purpose: str) -> bytes:
        info = b"callout/mac/" + purpose.encode()
        kdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info)
        return kdf.derive(self._keys[key_id].key)

    def reseal(self, sealed: Sealed, binding: SecretBinding) -> Sealed:
        """Re-encrypt with the primary key; returns ``sealed`` itself when it already uses it."""
        if sealed.key_id == self._primary.key_id:
            return sealed
        return self.seal(self.open(sealed, binding), binding)

    def with_primary(self, key: MasterKey) -> KeyRing:
        """A new ring whose primary is ``key``, keeping every old key for decryption."""
        old = self._keys.get(key.key_id)
        if old is not None and not hmac.compare_digest(old.key, key.key):
            raise ValueError(f"the ring already holds a different key with id {key.key_id!r}")
        return KeyRing([key, *(k for k in self._keys.values() if k.key_id != key.key_id)])

    def with_key(self, key: MasterKey) -> KeyRing:
        """A new ring that can also decrypt with ``key``; the primary does not change."""
        return self.with_primary(key).with_primary(self._primary)

    def without(self, key_id: str) -> KeyRing:
        """A new ring without a retired key; only once no stored value uses it (see rotation)."""
        if key_id == self._primary.key_id:
            raise CryptoError(
                f"refusing to drop {key_id!r}: it is the primary; make another key primary first",
                key_id=key_id,
            )
        if key_id not in self._keys:
            raise CryptoError(f"no master key {key_id!r} in the key ring", key_id=key_id)
        return KeyRing([k for k in self._keys.values() if k.key_id != key_id])

    def to_env_value(self) -> str:
        """The ``CALLOUT_MASTER_KEYS`` form: ``kid1:b64key1,kid2:b64key2``, primary first."""
        return ",".join(
            f"{k.key_id}:{base64.b64encode(k.key).decode()}" for k in self._keys.values()
        )

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """Parse ``to_env_value()``'s form; errors name the entry's position, never its content."""
        entries = [e.strip() for e in value.split(",")]
        if not any(entries):
            raise MissingMasterKey(_missing_message())
        keys: list[MasterKey] = []
        for position, entry in enumerate(entries, start=1):
            where = f"{ENV_VAR} entry {position}"
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise CryptoError(f"{where}: expected 'key_id:base64key'")
            keys.append(_parse_key(key_id.strip(), encoded.strip(), where))
        return _ring(keys, None, ENV_VAR)


def _missing_message(key_file: Path | None = None) -> str:
    where = f" (no key file at {key_file})" if key_file is not None else ""
    return f"no master key{where}: run `callout init` to create a key file, or set {ENV_VAR}"


def _parse_key(key_id: object, encoded: object, where: str) -> MasterKey:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise CryptoError(f"{where}: the key id must be 1-32 characters of A-Z a-z 0-9 _ -")
    encoded = encoded if isinstance(encoded, str) else "?"
    try:
        # Standard base64; the URL-safe alphabet is accepted too.
        key = base64.b64decode(encoded.translate(str.maketrans("-_", "+/")), validate=True)
    except (ValueError, binascii.Error):
        raise CryptoError(f"{where}: key {key_id!r} is not valid base64", key_id=key_id) from None
    if len(key) != KEY_SIZE:
        raise CryptoError(f"{where}: key {key_id!r} must be {KEY_SIZE} bytes", key_id=key_id)
    return MasterKey(key_id, key)


def _ring(keys: Sequence[MasterKey], primary_id: str | None, where: str) -> KeyRing:
    try:
        return KeyRing(keys, primary_id)
    except ValueError as exc:  # duplicate or unknown primary id: ids only, no key material
        raise CryptoError(f"{where}: {exc}") from None


def load_key_ring(env_value: str | None, key_file: Path | None) -> KeyRing:
    """The ring from ``CALLOUT_MASTER_KEYS`` when set and non-empty, else from the key file."""
    if env_value is not None and env_value.strip():
        return KeyRing.from_env_value(env_value)
    if key_file is None:
        raise MissingMasterKey(_missing_message())
    try:
        with open(key_file, "rb") as f:
            # fstat the open file, not the path: what we check is what we read.
            mode = os.fstat(f.fileno()).st_mode
            if os.name == "posix" and mode & 0o077:
                raise CryptoError(
                    f"key file {key_file} is accessible by group or others (mode "
                    f"{mode & 0o777:o}); run `chmod 600 {key_file}`"
                )
            raw = f.read()
    except FileNotFoundError:
        raise MissingMasterKey(_missing_message(key_file)) from None
    except OSError as exc:
        raise CryptoError(f"cannot read key file {key_file}: {exc.strerror or exc}") from None
    return _ring_from_file(raw, key_file)


def _ring_from_file(raw: bytes, key_file: Path) -> KeyRing:
    where = f"key file {key_file}"
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        raise CryptoError(f"{where} is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise CryptoError(f'{where}: expected {{"primary": id, "keys": [{{"id", "key"}}, ...]}}')
    keys = []
    for index, entry in enumerate(doc["keys"]):
        if not isinstance(entry, dict):
            raise CryptoError(f'{where}: keys[{index}] must be {{"id": ..., "key": ...}}')
        keys.append(_parse_key(entry.get("id"), entry.get("key"), f"{where}: keys[{index}]"))
    if not keys:
        raise MissingMasterKey(f"{where} holds no key: run `callout init` or set {ENV_VAR}")
    primary = doc.get("primary")
    if primary is not None and not isinstance(primary, str):
        raise CryptoError(f"{where}: primary must be a key id")
    return _ring(keys, primary, where)


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Replace ``path`` atomically with ``ring``; the file is 0600 from the moment it exists."""
    _install(path, ring, overwrite=True)


def create_key_file(path: Path) -> KeyRing:
    """``callout init``: generate one key and write a new key file; never overwrite one."""
    if path.exists():
        raise CryptoError(f"key file {path} already exists; refusing to overwrite it")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ring = KeyRing([MasterKey.generate()])
    _install(path, ring, overwrite=False)
    return ring


def rotation_plan(ring: KeyRing) -> tuple[KeyRing, MasterKey]:
    """Step 1 of rotation: a new key and the ring that makes it primary and keeps the old keys."""
    key = MasterKey.generate()
    while key.key_id in ring.key_ids():
        key = MasterKey.generate()
    return ring.with_primary(key), key


def _install(path: Path, ring: KeyRing, *, overwrite: bool) -> None:
    keys = [{"id": k.key_id, "key": base64.b64encode(k.key).decode()} for k in ring._keys.values()]
    data = json.dumps({"primary": ring.primary.key_id, "keys": keys}, indent=2).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # O_EXCL: never write through a file or symlink someone else planted; 0600 from creation.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise CryptoError(f"cannot write key file {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_new(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` only if nothing is there, so a racing ``callout init`` loses."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CryptoError(f"key file {path} already exists; refusing to overwrite it") from None
    except OSError:  # a filesystem without hard links: check, then rename
        if path.exists():
            raise CryptoError(f"key file {path} already exists; refusing to overwrite it") from None
        os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The de-identification key and the values derived from it.

One secret (:class:`DeidKey`, >= 16 bytes, kept in a hex key file of mode 0600) is behind
everything keyed in a release: remapped UIDs, patient pseudonyms, per-patient date offsets
(here) and the names of the output tree (:mod:`monai_prichexy.pipeline.naming`). Each is an
HMAC-SHA256 (:func:`monai_prichexy.hashing.hmac_sha256`) of the value under the key, so the
same key gives the same release and without it nothing can be reversed or confirmed.

* ``remap_uid``: ``"2.25." + int(HMAC-SHA256(key, uid)[:16])``: the same UID and key always
  give the same new UID (consistent across a batch and across runs);
* ``patient_pseudonym``: ``ANON-<10 hex>`` = HMAC(key, PatientID), so a patient's images stay
  linkable inside the release;
* ``date_shift_days``: HMAC(key, PatientID) -> ``-max_days..-1`` days.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from ..hashing import hmac_sha256

__all__ = [
    "DeidKey",
    "as_key",
    "load_key",
    "create_key",
    "load_or_create_key",
    "remap_uid",
    "patient_pseudonym",
    "date_shift_days",
]

logger = logging.getLogger(__name__)


class DeidKey:
    """The secret behind UID remapping, pseudonyms and date offsets (>= 16 bytes).

    ``repr`` never shows the secret; :attr:`fingerprint` identifies a key in reports.
    """

    __slots__ = ("_secret",)
    MIN_BYTES = 16

    def __init__(self, secret: bytes | bytearray) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("DeidKey needs bytes")
        if len(secret) < self.MIN_BYTES:
            raise ValueError(f"a de-identification key needs at least {self.MIN_BYTES} bytes")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls, nbytes: int = 32) -> DeidKey:
        return cls(secrets.token_bytes(nbytes))

    @classmethod
    def from_hex(cls, text: str) -> DeidKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise ValueError(f"invalid hex key: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DeidKey:
        return load_key(path)

    def to_hex(self) -> str:
        return self._secret.hex()

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256(key, message)."""
        return hmac_sha256(self._secret, message)

    @property
    def fingerprint(self) -> str:
        """12 hex digits that identify the key without revealing it."""
        return self.digest(b"monai_prichexy key fingerprint").hex()[:12]

    def __repr__(self) -> str:
        return f"DeidKey(<secret>, fingerprint={self.fingerprint})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeidKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def as_key(key: DeidKey | bytes | bytearray) -> DeidKey:
    """``key`` as a :class:`DeidKey` (raw bytes of at least 16 bytes are wrapped)."""
    return key if isinstance(key, DeidKey) else DeidKey(key)


def load_key(path: str | os.PathLike) -> DeidKey:
    """Read a key file (hex text). Warns when group/others can read it."""
    path = Path(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("key file %s is accessible by group/others (mode %o); use chmod 600", path, mode & 0o777)
    return DeidKey.from_hex(path.read_text(encoding="ascii"))


def create_key(path: str | os.PathLike, nbytes: int = 32) -> DeidKey:
    """Create a new key file: ``nbytes`` random bytes as hex, mode 0600. Fails if it exists."""
    path = Path(path)
    key = DeidKey.generate(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key.to_hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_or_create_key(path: str | os.PathLike, create: bool = True) -> DeidKey:
    """Load the key in ``path``; create it (0600) when it does not exist and ``create``."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"key file {path} does not exist")
        try:
            return create_key(path)
        except FileExistsError:  # created meanwhile by a parallel job
            pass
    return load_key(path)


# ---------------------------------------------------------------- keyed derived values


def remap_uid(uid: str, key: DeidKey | bytes) -> str:
    """``"2.25." + str(int(HMAC-SHA256(key, uid)[:16]))``: same input and key -> same UID."""
    value = str(uid).strip().rstrip("\x00")
    digest = as_key(key).digest(value.encode("ascii", errors="surrogateescape"))
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def patient_pseudonym(patient_id: str, key: DeidKey | bytes) -> str:
    """``"ANON-" + 10 hex digits`` of HMAC(key, PatientID)."""
    digest = as_key(key).digest(b"patient-pseudonym\x00" + str(patient_id).encode("utf-8"))
    return "ANON-" + digest[:5].hex()


def date_shift_days(patient_id: str, key: DeidKey | bytes, max_days: int = 365) -> int:
    """Per-patient date offset in ``-max_days .. -1`` derived from HMAC(key, PatientID)."""
    if max_days < 1:
        raise ValueError("max_days must be >= 1")
    digest = as_key(key).digest(b"date-shift\x00" + str(patient_id).encode("utf-8"))
    return -(int.from_bytes(digest[:8], "big") % max_days + 1)

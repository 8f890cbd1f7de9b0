"""Payloads encrypted at rest: an AES-256-GCM payload codec and the data converter every capt
process shares (worker, CLI, tests, the chaos runner and the history recorder).

Temporal stores every workflow input, result, signal, Update, query answer, memo and activity
argument as a *payload* in its database. capt's data converter serialises with pydantic
(`temporalio.contrib.pydantic`), then this codec encrypts each payload whole (its metadata and
data) with AES-256-GCM; failures' messages and stack traces are moved into an encoded payload too
(`DefaultFailureConverterWithEncodedAttributes`), so an error quoting a manifest is not plaintext
either. What stays readable to anyone with Temporal read access: workflow ids and types, task
queues, search attributes, timestamps and event types (docs/security.md).

Keys. A payload names the key that sealed it (`encryption-key-id` in its metadata, also bound as
GCM's associated data), so keys rotate: new payloads use the *current* key, payloads sealed by an
older key still open as long as that key is in the key set. A key set comes from:

- `CAPT_CODEC_KEYS`: `id=<base64 32 bytes>[,id=...]`, the first is current (local use);
- `CAPT_CODEC_KEY_FILE`: JSON `{"current": "k2", "keys": {"k1": {...}, "k2": {...}}}` where each key
  is `{"key": "<base64>"}` or `{"kms": "<base64 CiphertextBlob>"}` -- a data key wrapped by an AWS
  KMS key (`aws kms generate-data-key --key-spec AES_256`), unwrapped once at start with
  `kms:Decrypt` (real deployments: the plaintext key never touches a disk).

`capt codec keygen` writes a new key file, or adds a key to one and makes it current.
Without a key set, the worker refuses to start unless `--insecure-plaintext` (local development).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
NONCE_BYTES = 12
KEYS_ENV = "CAPT_CODEC_KEYS"
KEY_FILE_ENV = "CAPT_CODEC_KEY_FILE"


class CodecKeyError(ValueError):
    """A key set that cannot be used (named after the setting that is wrong)."""


@dataclass(frozen=True)
class KeySet:
    current: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise CodecKeyError(f"the current key {self.current!r} is not in the key set")
        for key_id, key in self.keys.items():
            if len(key) != 32:
                raise CodecKeyError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
            if not key_id or "," in key_id or "=" in key_id:
                raise CodecKeyError(f"key id {key_id!r}: use letters, digits, '-' or '_'")


class AesGcmCodec(PayloadCodec):
    """Each payload sealed whole with AES-256-GCM: 12 random nonce bytes + ciphertext+tag, the key
    id in clear metadata (and as associated data). Payloads that are not `binary/encrypted` (written
    before encryption was on, e.g. the committed test histories) decode unchanged."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    @property
    def current_key_id(self) -> str:
        return self._keys.current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        key_id = self._keys.current
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_META: key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_META, b"").decode()
        aead = self._aead.get(key_id)
        if aead is None:
            raise ValueError(f"payload sealed with key {key_id!r}, which is not in this key set")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        return Payload.FromString(aead.decrypt(nonce, sealed, key_id.encode()))


# --- key sets -------------------------------------------------------------------------------------


def _b64key(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as err:
        raise CodecKeyError(f"{what}: not base64") from err


def parse_keys_env(text: str) -> KeySet:
    """`id=<base64>[,id=<base64>...]`; the first is current."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs:
        raise CodecKeyError(f"{KEYS_ENV} is empty")
    keys: dict[str, bytes] = {}
    for pair in pairs:
        key_id, sep, value = pair.partition("=")
        if not sep:
            raise CodecKeyError(f"{KEYS_ENV}: {key_id!r} is not id=<base64 key>")
        keys[key_id.strip()] = _b64key(value.strip(), f"{KEYS_ENV} key {key_id.strip()!r}")
    return KeySet(current=pairs[0].partition("=")[0].strip(), keys=keys)


def load_key_file(path: Path, kms_client=None) -> KeySet:
    """The JSON key file (module doc); KMS-wrapped keys are unwrapped with `kms_client` (default:
    a boto3 KMS client from the standard AWS environment)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CodecKeyError(f"{KEY_FILE_ENV}={path}: {err}") from err
    keys: dict[str, bytes] = {}
    for key_id, entry in (doc.get("keys") or {}).items():
        if "key" in entry:
            keys[key_id] = _b64key(entry["key"], f"{path} key {key_id!r}")
        elif "kms" in entry:
            if kms_client is None:
                import boto3

                kms_client = boto3.client("kms")
            blob = _b64key(entry["kms"], f"{path} key {key_id!r}")
            keys[key_id] = kms_client.decrypt(CiphertextBlob=blob)["Plaintext"]
        else:
            raise CodecKeyError(f"{path} key {key_id!r}: needs 'key' or 'kms'")
    if not keys:
        raise CodecKeyError(f"{path}: no keys")
    return KeySet(current=str(doc.get("current") or next(iter(keys))), keys=keys)


def keys_from_env(environ: Mapping[str, str] | None = None) -> KeySet | None:
    env = os.environ if environ is None else environ
    if env.get(KEYS_ENV):
        return parse_keys_env(env[KEYS_ENV])
    if env.get(KEY_FILE_ENV):
        return load_key_file(Path(env[KEY_FILE_ENV]))
    return None


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_key_file(path: Path, key_id: str, *, existing: Iterable[tuple[str, str]] = ()) -> None:
    """A key file whose current key is a new `key_id`, keeping `existing` (id, base64) keys."""
    keys = {k: {"key": v} for k, v in existing}
    if key_id in keys:
        raise CodecKeyError(f"key {key_id!r} is already in {path}")
    keys[key_id] = {"key": new_key()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"current": key_id, "keys": keys}, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


# --- the data converter ---------------------------------------------------------------------------


def data_converter(keys: KeySet | None) -> DataConverter:
    """pydantic payloads, sealed by the codec when `keys` is given, failures' messages encoded."""
    if keys is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=AesGcmCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def converter_from_env(environ: Mapping[str, str] | None = None) -> DataConverter:
    """The converter for the keys the environment names (plaintext pydantic when none)."""
    return data_converter(keys_from_env(environ))

#!/usr/bin/env python3
"""Independent opener for envelope format v1, written from docs/ciphertext-format.md.

Opens every case of crates/envelope/tests/vectors/v1.json with the `local` KEK keys the case
lists and checks the outcome against the case's `expect` field. Prints one line per case and
exits non-zero on any mismatch.

Needs only the standard library and the `cryptography` package (AESGCM, HKDF, HMAC).

    PYTHONPATH=target/tools/py python3 docs/spec-check/open_vectors.py [VECTORS.json]
"""

import base64
import hmac as std_hmac
import json
import re
import sys
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hmac import HMAC
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:
    sys.exit(
        "open_vectors.py needs the `cryptography` package: "
        "python3 -m pip install --target target/tools/py cryptography, "
        "then run with PYTHONPATH=target/tools/py"
    )

# --- Constants (spec §2, §3, §6) -------------------------------------------------------------

TEXT_PREFIX = "pbe1."
MAGIC = b"PBEV"
VERSION = 1
SUITE = 0x0001
NONCE_LEN = 12
GCM_TAG_LEN = 16
HEADER_TAG_LEN = 32

MAX_PLAINTEXT_LEN = 16 * 1024 * 1024
MAX_ENVELOPE_LEN = MAX_PLAINTEXT_LEN + 1024 * 1024
MAX_TEXT_BODY_LEN = -(-MAX_ENVELOPE_LEN // 3) * 4
MAX_CONTEXT_SECTION = 0xFFFF
MAX_CONTEXT_ENTRIES = 32
MAX_CONTEXT_KEY_LEN = 128
MAX_CONTEXT_VALUE_LEN = 1024
MAX_WRAPPED_KEYS = 16
MAX_PROVIDER_LEN = 32
MAX_KEY_ID_LEN = 2048
MAX_WRAPPED_LEN = 8192

KDF_INFO = b"PBEV v1 suite 0x0001"
KDF_LEN = 76

LOCAL_PROVIDER = "local"
LOCAL_WRAP_AAD_DOMAIN = b"portal-backup local-kek wrap v1\x00"
LOCAL_FINGERPRINT_DOMAIN = b"portal-backup local-kek fingerprint v1"
LOCAL_WRAPPED_LEN = 12 + 32 + 16

PROVIDER_RE = re.compile(rb"[a-z0-9-]{1,32}")
BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


# --- Error classes (spec §5) -----------------------------------------------------------------


class EnvelopeError(Exception):
    """Base of the outcomes an opener reports."""

    kind = "error"

    def __init__(self, detail=""):
        super().__init__(detail)
        self.detail = detail

    def __str__(self):
        return f"{self.kind}({self.detail})" if self.detail else self.kind


class FormatError(EnvelopeError):
    """Class `format`; `kind` is the sub-kind (bad_magic, truncated, ...)."""

    def __init__(self, kind, detail=""):
        super().__init__(detail)
        self.kind = kind


class DecryptError(EnvelopeError):
    kind = "decrypt"


class NoMatchingKek(EnvelopeError):
    kind = "no_matching_kek"


class UnwrapFailed(Exception):
    """What a KEK reports for a cryptographic unwrap failure (opaque)."""


# --- Text form (spec §7) ---------------------------------------------------------------------


def decode_text(text):
    if not text.startswith(TEXT_PREFIX):
        raise FormatError("text", "missing the pbe1. prefix")
    body = text[len(TEXT_PREFIX):]
    if len(body) > MAX_TEXT_BODY_LEN:
        raise FormatError("limit_exceeded", "text length")
    if not BASE64URL_RE.fullmatch(body) or len(body) % 4 == 1:
        raise FormatError("text", "not canonical unpadded base64url")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    # Canonical: the unused low bits of the last character are zero, so re-encoding gives the
    # same string.
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != body:
        raise FormatError("text", "not canonical unpadded base64url")
    return raw


# --- Binary parsing (spec §3, §4, §5) --------------------------------------------------------


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, field):
        if n > len(self.data) - self.pos:
            raise FormatError("truncated", field)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size, field):
        return int.from_bytes(self.take(size, field), "big")

    def bytes_u16(self, field, limit):
        n = self.uint(2, field)
        if n > limit:
            raise FormatError("limit_exceeded", f"{field}: {n} > {limit}")
        return self.take(n, field)

    def utf8_u16(self, field, limit):
        return utf8(self.bytes_u16(field, limit), field)

    def finish(self):
        left = len(self.data) - self.pos
        if left:
            raise FormatError("trailing_bytes", f"{left} bytes")


def utf8(raw, field):
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise FormatError("invalid", f"{field}: not UTF-8") from None


def parse_context(section):
    """Canonical context bytes -> dict, strictly (spec §4)."""
    r = Reader(section)
    count = r.uint(2, "context entry count")
    if count > MAX_CONTEXT_ENTRIES:
        raise FormatError("limit_exceeded", f"context entry count: {count}")
    entries = {}
    previous = None
    for _ in range(count):
        key_raw = r.bytes_u16("context key", MAX_CONTEXT_KEY_LEN)
        key = utf8(key_raw, "context key")
        value = r.utf8_u16("context value", MAX_CONTEXT_VALUE_LEN)
        if not key_raw:
            raise FormatError("invalid", "context key: empty")
        if previous is not None and previous >= key_raw:
            raise FormatError("invalid", "context: keys not in strictly ascending order")
        previous = key_raw
        entries[key] = value
    r.finish()
    return entries


def encode_context(entries):
    """dict -> canonical bytes (spec §4). Also used for the caller's context."""
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in entries.items())
    if len(items) > MAX_CONTEXT_ENTRIES:
        raise ValueError("too many context entries")
    out = bytearray(len(items).to_bytes(2, "big"))
    for k, v in items:
        if not k or len(k) > MAX_CONTEXT_KEY_LEN or len(v) > MAX_CONTEXT_VALUE_LEN:
            raise ValueError("context entry out of bounds")
        out += len(k).to_bytes(2, "big") + k + len(v).to_bytes(2, "big") + v
    return bytes(out)


def parse_envelope(data):
    if len(data) > MAX_ENVELOPE_LEN:
        raise FormatError("limit_exceeded", "envelope length")
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError("bad_magic")
    r = Reader(data)
    r.take(4, "magic")
    version = r.uint(1, "version")
    if version != VERSION:
        raise FormatError("unsupported_version", str(version))
    suite = r.uint(2, "suite")
    if suite != SUITE:
        raise FormatError("unsupported_suite", f"{suite:#06x}")
    if r.uint(1, "flags") != 0:
        raise FormatError("invalid", "flags: reserved bits set")
    nonce = r.take(NONCE_LEN, "nonce")
    context = parse_context(r.bytes_u16("context", MAX_CONTEXT_SECTION))
    kek_context_bytes = r.bytes_u16("KEK context", MAX_CONTEXT_SECTION)
    kek_context = parse_context(kek_context_bytes)
    if any(context.get(k) != v for k, v in kek_context.items()):
        raise FormatError("invalid", "KEK context: not a subset of the context")
    fixed_end = r.pos

    count = r.uint(1, "wrapped key count")
    if count == 0:
        raise FormatError("invalid", "wrapped key count: zero")
    if count > MAX_WRAPPED_KEYS:
        raise FormatError("limit_exceeded", f"wrapped key count: {count}")
    wrapped = []
    for _ in range(count):
        plen = r.uint(1, "provider")
        if plen > MAX_PROVIDER_LEN:
            raise FormatError("limit_exceeded", f"provider: {plen}")
        provider_raw = r.take(plen, "provider")
        provider = utf8(provider_raw, "provider")
        key_id = r.utf8_u16("key id", MAX_KEY_ID_LEN)
        blob = r.bytes_u16("wrapped key", MAX_WRAPPED_LEN)
        if not PROVIDER_RE.fullmatch(provider_raw):
            raise FormatError("invalid", "provider: must be 1 to 32 bytes of a-z, 0-9, '-'")
        if not key_id:
            raise FormatError("invalid", "key id: must be 1 to 2048 bytes")
        if not blob:
            raise FormatError("invalid", "wrapped key: must be 1 to 8192 bytes")
        wrapped.append((provider, key_id, blob))
    tag_start = r.pos
    header_tag = r.take(HEADER_TAG_LEN, "header tag")

    payload_len = r.uint(4, "payload length")
    if payload_len > MAX_PLAINTEXT_LEN + GCM_TAG_LEN:
        raise FormatError("limit_exceeded", f"payload length: {payload_len}")
    if payload_len < GCM_TAG_LEN:
        raise FormatError("invalid", "payload length: shorter than the GCM tag")
    payload = r.take(payload_len, "payload")
    r.finish()

    return {
        "version": version,
        "suite": suite,
        "nonce": nonce,
        "context": context,
        "kek_context": kek_context,
        "kek_context_bytes": kek_context_bytes,
        "wrapped": wrapped,
        "fixed_header": data[:fixed_end],
        "tagged_header": data[:tag_start],
        "header_tag": header_tag,
        "payload": payload,
    }


# --- Cryptography (spec §6) ------------------------------------------------------------------


def key_schedule(data_key):
    okm = HKDF(algorithm=hashes.SHA256(), length=KDF_LEN, salt=None, info=KDF_INFO).derive(
        data_key
    )
    return {"payload_key": okm[0:32], "mac_key": okm[32:64], "nonce_base": okm[64:76]}


def header_tag_ok(mac_key, tagged_header, tag):
    mac = HMAC(mac_key, hashes.SHA256())
    mac.update(tagged_header)
    try:
        mac.verify(tag)  # constant time
        return True
    except InvalidSignature:
        return False


class LocalKek:
    """The `local` KEK (spec §8)."""

    provider = LOCAL_PROVIDER

    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("a local KEK is 32 bytes")
        self.key = key
        fp = std_hmac.new(key, LOCAL_FINGERPRINT_DOMAIN, "sha256").digest()
        self.key_id = "fp:" + fp[:16].hex()

    def can_unwrap(self, provider, key_id):
        return provider == self.provider and key_id == self.key_id

    def unwrap(self, blob, kek_context_bytes):
        if len(blob) != LOCAL_WRAPPED_LEN:
            raise UnwrapFailed()
        nonce, sealed = blob[:12], blob[12:]
        try:
            key = AESGCM(self.key).decrypt(nonce, sealed, LOCAL_WRAP_AAD_DOMAIN + kek_context_bytes)
        except InvalidTag:
            raise UnwrapFailed() from None
        return key


def open_envelope(keks, context, data):
    """Spec §9. Returns (plaintext, parsed, schedule)."""
    env = parse_envelope(data)
    if env["context"] != context:
        raise DecryptError("context differs")
    matched = False
    for provider, key_id, blob in env["wrapped"]:
        for kek in keks:
            if not kek.can_unwrap(provider, key_id):
                continue
            matched = True
            try:
                data_key = kek.unwrap(blob, encode_context(env["kek_context"]))
            except UnwrapFailed:
                continue
            ks = key_schedule(data_key)
            if not header_tag_ok(ks["mac_key"], env["tagged_header"], env["header_tag"]):
                continue
            try:
                plaintext = AESGCM(ks["payload_key"]).decrypt(
                    env["nonce"], env["payload"], env["fixed_header"]
                )
            except InvalidTag:
                raise DecryptError("payload") from None
            return plaintext, env, ks
    if not matched:
        refs = ", ".join(f"{p}:{k}" for p, k, _ in env["wrapped"])
        raise NoMatchingKek(refs)
    raise DecryptError("no wrapped key unwrapped to a key the header tag accepts")


# --- Vector runner ---------------------------------------------------------------------------


def outcome_matches(expect, result):
    if expect == "ok":
        return isinstance(result, bytes)
    if expect == "decrypt":
        return isinstance(result, DecryptError)
    if expect == "no_matching_kek":
        return isinstance(result, NoMatchingKek)
    if expect == "unsupported_version":
        return isinstance(result, FormatError) and result.kind == "unsupported_version"
    if expect == "truncated":
        return isinstance(result, FormatError) and result.kind == "truncated"
    raise SystemExit(f"unknown expect value {expect!r}")


def describe(result):
    if isinstance(result, bytes):
        return f"ok ({len(result)} bytes)"
    return str(result)


def run_case(case, opened):
    """Returns (passed, message). Records each opened envelope in `opened`."""
    keks = [LocalKek(bytes.fromhex(k)) for k in case["local_keks_hex"]]
    context = dict(case["context"])
    encode_context(context)  # the caller's context must itself be valid
    expect = case["expect"]
    extra = ""
    try:
        data = decode_text(case["envelope_text"])
        plaintext, env, ks = open_envelope(keks, context, data)
        result = plaintext
        if plaintext != bytes.fromhex(case["plaintext_hex"]):
            return False, f"expected {expect}, got a plaintext that differs from plaintext_hex"
        # Round trips the spec promises: the text form is canonical, and the KEK context
        # re-encodes to the bytes the envelope carries.
        if TEXT_PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=") != case["envelope_text"]:
            return False, "text form is not the canonical encoding of the envelope"
        if encode_context(env["kek_context"]) != env["kek_context_bytes"]:
            return False, "KEK context does not re-encode to its canonical bytes"
        # Seal-side rule (spec §6.3): nonce = nonce_base XOR (0^4 || u64be(counter)), with
        # counter < 2^32. Holds for envelopes the reference sealer wrote; openers do not check it.
        delta = bytes(a ^ b for a, b in zip(env["nonce"], ks["nonce_base"]))
        if delta[:8] != bytes(8):
            return False, f"nonce is not nonce_base XOR a 32-bit counter (delta {delta.hex()})"
        extra = f", seal counter {int.from_bytes(delta[4:], 'big')}"
        opened.append((case["name"], env))
    except EnvelopeError as e:
        result = e
    if not outcome_matches(expect, result):
        return False, f"expected {expect}, got {describe(result)}"
    return True, f"expected {expect}, got {describe(result)}{extra}"


def main(argv):
    root = Path(__file__).resolve().parents[2]
    path = Path(argv[1]) if len(argv) > 1 else root / "crates/envelope/tests/vectors/v1.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    cases = doc["cases"]
    failures = 0
    opened = []
    for i, case in enumerate(cases, 1):
        passed, message = run_case(case, opened)
        failures += not passed
        print(f"{'PASS' if passed else 'FAIL'} {i:2d} {case['name']}: {message}")
    # Rewrap invariant (spec §10.3, §11): envelopes that share a fixed header (same nonce and
    # contexts, hence the same data key) carry byte-identical payloads.
    for j, (name_b, b) in enumerate(opened):
        for name_a, a in opened[:j]:
            if a["fixed_header"] != b["fixed_header"]:
                continue
            same = a["payload"] == b["payload"]
            failures += not same
            verdict = "identical" if same else "DIFFERENT"
            print(f"{'PASS' if same else 'FAIL'} -- same fixed header, payload {verdict}: "
                  f"{name_a!r} / {name_b!r}")
    if not cases:
        print("FAIL: the vector file has no cases")
        return 1
    if failures:
        print(f"{failures} of {len(cases)} cases disagree with docs/ciphertext-format.md")
        return 1
    print(f"all {len(cases)} cases agree with docs/ciphertext-format.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A strict, minimal DER reader for the one X.509 shape the agent must understand: the
manager's self-signed Ed25519 CA certificate (``DATA_DIR/ca.pem``, made by
:mod:`swarmdeploy.crypto.ca`).

The agent stays lean (no ``cryptography``), so it walks the structure itself -- by position,
never by searching for byte patterns: a byte search would accept a key hidden anywhere (in a
subject name, an extension) and is exactly the kind of shortcut an attacker feeds. Anything
that is not canonical DER (indefinite or non-minimal lengths, high tag numbers, trailing
bytes) is refused with :class:`~swarmdeploy.crypto.rejections.Malformed`.

RFC 5280 §4.1 (Certificate, TBSCertificate), RFC 8410 §3-4 (Ed25519 algorithm identifier
without parameters, SubjectPublicKeyInfo), X.690 §10 (DER). No I/O.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from swarmdeploy.crypto.rejections import Malformed

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
EXPLICIT_0 = 0xA0
#: DER of the OID 1.3.101.112 (id-Ed25519), RFC 8410 §3.
ED25519_OID_DER = bytes.fromhex("06032b6570")
_MAX_LENGTH_OCTETS = 4


@dataclass(frozen=True, slots=True)
class Tlv:
    """One DER element: ``tag``, and where its whole encoding and its value lie in ``data``."""

    data: bytes
    tag: int
    start: int
    value_start: int
    end: int

    @property
    def value(self) -> bytes:
        """The content octets."""
        return self.data[self.value_start : self.end]

    @property
    def encoding(self) -> bytes:
        """The whole element (tag, length and content), e.g. what a signature covers."""
        return self.data[self.start : self.end]

    def children(self) -> list[Tlv]:
        """The elements inside a constructed element; they must fill it exactly."""
        if not self.tag & 0x20:
            raise Malformed(f"DER tag {self.tag:#04x} is not constructed")
        out: list[Tlv] = []
        pos = self.value_start
        while pos < self.end:
            child = read_tlv(self.data, pos, self.end)
            out.append(child)
            pos = child.end
        return out


def read_tlv(data: bytes, pos: int, limit: int) -> Tlv:
    """Read one element at ``pos`` that must end at or before ``limit`` (X.690 §8.1, DER)."""
    if pos + 2 > limit:
        raise Malformed("truncated DER element")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise Malformed("DER high tag numbers are not used in certificates")
    at = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise Malformed("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or at + count > limit:
            raise Malformed("DER length out of range")
        length = int.from_bytes(data[at : at + count], "big")
        if data[at] == 0 or length < 0x80:
            raise Malformed("non-minimal DER length")
        at += count
    if at + length > limit:
        raise Malformed("DER element runs past its container")
    return Tlv(data, tag, pos, at, at + length)


def read_single(data: bytes) -> Tlv:
    """The one element that makes up all of ``data`` (no trailing bytes)."""
    element = read_tlv(data, 0, len(data))
    if element.end != len(data):
        raise Malformed("trailing bytes after the DER element")
    return element


def expect(element: Tlv, tag: int, what: str) -> Tlv:
    """``element`` if it has ``tag``, else :class:`Malformed` naming ``what``."""
    if element.tag != tag:
        raise Malformed(f"{what}: expected DER tag {tag:#04x}, found {element.tag:#04x}")
    return element


def ed25519_algorithm(element: Tlv, what: str) -> None:
    """Check an AlgorithmIdentifier is exactly ``SEQUENCE { id-Ed25519 }`` (no parameters)."""
    expect(element, SEQUENCE, what)
    if element.value != ED25519_OID_DER:
        raise Malformed(f"{what} is not Ed25519")


def ed25519_spki(element: Tlv) -> bytes:
    """The raw 32-byte key of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4)."""
    parts = expect(element, SEQUENCE, "subjectPublicKeyInfo").children()
    if len(parts) != 2:
        raise Malformed("subjectPublicKeyInfo must have two elements")
    ed25519_algorithm(parts[0], "the subject public key")
    bits = expect(parts[1], BIT_STRING, "subjectPublicKey").value
    if len(bits) != 33 or bits[0] != 0:
        raise Malformed("an Ed25519 public key is a 32-byte BIT STRING")
    return bits[1:]


def signature_bits(element: Tlv) -> bytes:
    """The 64 raw bytes of an Ed25519 signature BIT STRING."""
    bits = expect(element, BIT_STRING, "signatureValue").value
    if len(bits) != 65 or bits[0] != 0:
        raise Malformed("an Ed25519 signature is a 64-byte BIT STRING")
    return bits[1:]


def time_ms(element: Tlv) -> int:
    """UTCTime or GeneralizedTime (``...Z``, whole seconds, RFC 5280 §4.1.2.5) in ms."""
    text = element.value.decode("ascii", "replace")
    if element.tag == UTC_TIME and len(text) == 13:
        year = int(text[:2]) if text[:2].isdigit() else -1
        text = ("19" if year >= 50 else "20") + text
    elif element.tag != GENERALIZED_TIME or len(text) != 15:
        raise Malformed("certificate validity must be UTCTime or GeneralizedTime")
    if not (text.endswith("Z") and text[:-1].isdigit()):
        raise Malformed(f"invalid certificate time {text!r}")
    try:
        parsed = time.strptime(text[:-1], "%Y%m%d%H%M%S")
    except ValueError:
        raise Malformed(f"invalid certificate time {text!r}") from None
    return calendar.timegm(parsed) * 1000

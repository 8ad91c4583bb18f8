"""Personal data: the kinds Spine finds, what a tenant's policy does with each, and the
shape of the token that stands in for a value. No I/O here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

#: Built-in kinds. Tenants add their own (upper-case names, e.g. ``EMPLOYEE_ID``).
EMAIL = "EMAIL"
PHONE = "PHONE"
CARD = "CARD"
IBAN = "IBAN"
SSN = "SSN"
IPV4 = "IPV4"
IPV6 = "IPV6"
BUILTIN_KINDS = (EMAIL, PHONE, CARD, IBAN, SSN, IPV4, IPV6)

KIND_NAME = re.compile(r"[A-Z][A-Z0-9_]{1,31}")
#: Hex digits of the HMAC kept in a token: 48 bits, so two values of one tenant collide
#: with a chance of about 1 in 10^14 per pair, yet a token stays short in a snippet.
TOKEN_HEX_CHARS = 12
TOKEN = re.compile(rf"<([A-Z][A-Z0-9_]{{1,31}}):([0-9a-f]{{{TOKEN_HEX_CHARS}}})>")


def format_token(kind: str, digest_hex: str) -> str:
    """``<EMAIL:3f9a1c2b04d1>``: the stand-in for one value in stored text."""
    return f"<{kind}:{digest_hex[:TOKEN_HEX_CHARS]}>"


def redaction(kind: str) -> str:
    """What a redacted value becomes: its kind only, nothing to search or reveal."""
    return f"[{kind}]"


class PiiAction(enum.StrEnum):
    TOKENISE = "tokenise"
    REDACT = "redact"
    KEEP = "keep"


@dataclass(frozen=True)
class CustomPattern:
    """A tenant's own kind of personal data, as an RE2 regular expression."""

    kind: str
    pattern: str


@dataclass(frozen=True)
class PiiPolicy:
    """What happens to each kind of match; any kind not named is tokenised."""

    actions: dict[str, PiiAction] = field(default_factory=dict)
    custom: tuple[CustomPattern, ...] = ()

    def action(self, kind: str) -> PiiAction:
        return self.actions.get(kind, PiiAction.TOKENISE)

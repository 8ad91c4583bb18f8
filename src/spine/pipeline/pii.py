"""Personal data in text: find it, then tokenise, redact or keep each value by the tenant's policy.

``PiiDetector.find`` reports e-mail addresses, phone numbers, payment card numbers, IBANs, US
social security numbers, IPv4 and IPv6 addresses and a tenant's own kinds (RE2 patterns), as
sorted, non-overlapping spans with ``text[start:end] == value``. ``scrub`` then rewrites the text.
Both are pure: the HMAC behind a token and the vault that keeps the values belong to the caller.

Every scan is linear in the length of the text, whatever the text: a detector may run on a
many-megabyte document or on a hostile query. The built-in expressions only start a match where a
token starts (look-behinds) and use possessive runs, so no run of characters is re-scanned from
each of its positions; checksums, lengths and issuers are checked in Python on short candidates.
Tenant patterns run on RE2 in bounded windows (see ``_custom_spans``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import phonenumbers
import re2  # type: ignore[import-untyped]

from spine.domain.privacy import (
    BUILTIN_KINDS,
    CARD,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    KIND_NAME,
    PHONE,
    SSN,
    TOKEN,
    CustomPattern,
    PiiAction,
    PiiPolicy,
    redaction,
)
from spine.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One value found in a text: ``text[start:end] == value``.

    ``canonical`` is the value normalised so that one value written two ways gives one token:
    e-mail lower-cased, phone E.164, card digits only, IBAN upper-case without spaces, SSN
    ``ddd-dd-dddd``, IP addresses in the ``ipaddress`` module's compressed form, a custom kind's
    match as is.
    """

    kind: str
    start: int
    end: int
    value: str
    canonical: str


@dataclass(frozen=True, slots=True)
class TokenisedValue:
    """A token that now stands in the text, and what goes (encrypted) into the vault for it."""

    token: str
    kind: str
    canonical: str


@dataclass(frozen=True, slots=True)
class Scrubbed:
    """The rewritten text; ``tokenised`` has one entry per distinct token, in first-seen order;
    ``counts`` counts matches per kind whatever their action, for logs and metrics."""

    text: str
    tokenised: list[TokenisedValue]
    counts: dict[str, int]


# At an overlap the longer match wins, then the earlier one, then the kind that comes first here:
# the more structured a format, the less likely it matched by accident.
_PRIORITY = {EMAIL: 0, IBAN: 1, CARD: 2, SSN: 3, IPV6: 4, IPV4: 5, PHONE: 6}
_CUSTOM_PRIORITY = len(_PRIORITY)

# (start, end, priority, kind, canonical)
_Candidate = tuple[int, int, int, str, str]

# ---------------------------------------------------------------------------------------------
# E-mail: a practical subset of RFC 5322 (dot-atoms of the characters people actually use, no
# quoted local parts, no address literals). Quotes and slashes stay out of the local part, so
# "name='ann@example.org'" yields the address and not "name='ann@...".

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_%+.\-])"
    r"(?P<local>[A-Za-z0-9_%+\-]++(?:\.[A-Za-z0-9_%+\-]++)*+)"
    r"@"
    r"(?P<domain>[A-Za-z0-9\-]{1,63}+(?:\.[A-Za-z0-9\-]{1,63}+)++)"
    r"(?![A-Za-z0-9\-])"
)
_TLD = re.compile(r"[A-Za-z]{2,63}")


def _email_candidates(text: str) -> Iterator[_Candidate]:
    for match in _EMAIL.finditer(text):
        labels = match.group("domain").split(".")
        # "ann@example.org.uk2" or a sentence glued on: keep the longest prefix ending in a TLD.
        while len(labels) >= 2 and not _TLD.fullmatch(labels[-1]):
            labels.pop()
        if len(labels) < 2 or any(label[0] == "-" or label[-1] == "-" for label in labels):
            continue
        local = match.group("local")
        end = match.start("domain") + sum(len(label) for label in labels) + len(labels) - 1
        if len(local) > 64 or end - match.start() > 254:  # RFC 5321 limits
            continue
        value = text[match.start() : end]
        yield match.start(), end, _PRIORITY[EMAIL], EMAIL, value.lower()


# ---------------------------------------------------------------------------------------------
# Payment cards. A digit run is a maximal sequence of digit groups joined by single spaces or
# dashes; a card is a window of whole groups in it (13-19 digits, one kind of separator, a first
# group of four when grouped) that passes Luhn and starts with a known issuer's prefix at one of
# that issuer's lengths. Luhn alone lets one random digit string in ten through; the issuer table
# cuts that sharply. Windows keep "ref 12 4111 1111 1111 1111" and "4111 1111 1111 1111 123"
# (a trailing CVV) working without matching inside a longer ungrouped number.
#
# Hand-written rather than python-stdnum: Luhn and mod-97 are a few lines each and tested here
# value by value, stdnum has no card issuer table (the part that keeps false positives low), and
# its LGPL licence would need a review that an Apache-2.0 project can avoid for ~40 lines.

# A run starts at a digit that no digit (nor a digit and a separator) comes before: a letter just
# before it only rules out windows that start with its first group ("A0 4111..." holds a card).
_DIGIT_RUN = re.compile(r"(?<![0-9])(?<![0-9][ .,\-])[0-9]++(?:[ \-][0-9]++)*+")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_CARD_LENGTHS = range(13, 20)
_CARD_ISSUERS: tuple[tuple[str, str, Sequence[int]], ...] = (
    # (lowest prefix, highest prefix, lengths); prefixes of one row have the same length
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", range(16, 20)),  # Discover
    ("644", "649", range(16, 20)),
    ("65", "65", range(16, 20)),
    ("3528", "3589", range(16, 20)),  # JCB
    ("300", "305", range(14, 20)),  # Diners Club
    ("3095", "3095", range(14, 20)),
    ("36", "36", range(14, 20)),
    ("38", "39", range(16, 20)),
    ("62", "62", range(16, 20)),  # UnionPay, and Discover's co-branded 622126-622925
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _known_issuer(digits: str) -> bool:
    return any(
        len(digits) in lengths and low <= digits[: len(low)] <= high
        for low, high, lengths in _CARD_ISSUERS
    )


def _is_card(digits: str) -> bool:
    return _known_issuer(digits) and _luhn_ok(digits)


def _free_after(text: str, end: int) -> bool:
    """No letter or digit continues the token at ``end``, nor a decimal part (".5", ",25")."""
    if end >= len(text):
        return True
    char = text[end]
    if char.isascii() and char.isalnum():
        return False
    return not (char in ".," and end + 1 < len(text) and text[end + 1].isdigit())


def _card_windows(text: str, groups: list[tuple[int, int]], first: int) -> Iterator[int]:
    """Indexes of the last group of each window of ``groups`` from ``first`` printed as a card
    could be: one kind of separator, a first group of four, inner groups of 3-6 digits."""
    yield first
    start, end = groups[first]
    if end - start != 4 or first + 1 == len(groups):
        return
    separator = text[groups[first + 1][0] - 1]
    for last in range(first + 1, len(groups)):
        group_start, group_end = groups[last]
        if text[group_start - 1] != separator or group_end - group_start > 6:
            return
        yield last
        if group_end - group_start < 3:  # fine as the last group, not as an inner one
            return


def _card_candidates(text: str) -> Iterator[_Candidate]:
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < _CARD_LENGTHS.start:
            continue
        groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(text, run.start(), run.end())]
        # A window that ends the run must not be followed by letters or a decimal part, nor
        # one that starts it be preceded by a letter.
        tail_free = _free_after(text, run.end())
        head_free = run.start() == 0 or not (
            text[run.start() - 1].isascii() and text[run.start() - 1].isalpha()
        )
        for first in range(0 if head_free else 1, len(groups)):
            best: tuple[int, str] | None = None
            digits = ""
            for last in _card_windows(text, groups, first):
                group_start, group_end = groups[last]
                digits += text[group_start:group_end]
                if len(digits) > _CARD_LENGTHS[-1]:
                    break
                ends_run = last == len(groups) - 1
                if (
                    len(digits) in _CARD_LENGTHS
                    and (tail_free or not ends_run)
                    and _is_card(digits)
                ):
                    best = (group_end, digits)
            if best is not None:
                yield groups[first][0], best[0], _PRIORITY[CARD], CARD, best[1]


# ---------------------------------------------------------------------------------------------
# IBAN: country code, two check digits, BBAN; written solid or in groups of four. The candidate
# expression reads up to 30 more characters (the longest BBAN), possibly a word past the end;
# the country's registered length says where the IBAN really ends.

_IBAN_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}+")
# Total lengths by country, from the SWIFT IBAN registry (release 101).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_checksum_ok(iban: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as 10-35, mod 97 is 1."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban_at(text: str, start: int, raw: str) -> _Candidate | None:
    length = _IBAN_LENGTHS.get(raw[:2].upper())
    if length is None:
        return None
    kept = 0
    cut = 0
    while cut < len(raw) and kept < length:
        if raw[cut] != " ":
            kept += 1
        cut += 1
    if kept < length or not _free_after(text, start + cut):
        return None
    written = raw[:cut]
    compact = written.replace(" ", "").upper()
    grouped = " ".join(compact[i : i + 4] for i in range(0, length, 4))
    if written.upper() not in (compact, grouped) or not _iban_checksum_ok(compact):
        return None
    return start, start + cut, _PRIORITY[IBAN], IBAN, compact


def _iban_candidates(text: str) -> Iterator[_Candidate]:
    position = 0
    while (match := _IBAN_CANDIDATE.search(text, position)) is not None:
        found = _iban_at(text, match.start(), match.group())
        if found is None:
            # The next IBAN may start inside this candidate ("XX12 DE89 3704 ..."): the
            # look-behind lets the search stop only at a word start, and a candidate is at most
            # ~64 characters, so this stays linear.
            position = match.start() + 1
        else:
            yield found
            position = found[1]


# ---------------------------------------------------------------------------------------------
# US social security numbers, dashed form only: undashed nine digits are too often something else.

_SSN = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9]-)([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9A-Za-z]|-[0-9])"
)


def _ssn_candidates(text: str) -> Iterator[_Candidate]:
    for match in _SSN.finditer(text):
        area, group, serial = match.groups()
        # The SSA never issues these (and 9xx are ITINs, not SSNs).
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield match.start(), match.end(), _PRIORITY[SSN], SSN, match.group()


# ---------------------------------------------------------------------------------------------
# IP addresses. IPv4 must stand alone: not after a letter ("v1.2.3.4") and not inside a longer
# dotted number ("1.2.3.4.5"). IPv6 candidates are whole runs of hex digits, colons and dots with
# a colon in their first five characters; ipaddress decides. A lone "::" or a one-group form
# ("::1", "fe80::") is not reported: too little to identify anyone and too easy to hit in code.

_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z]|\.[0-9])")
# A label glued on with a colon ("ip:2001:db8::1", "IPv6:...") is skipped, but only when the run
# cannot start at the label itself ("dead:beef::1" is one address).
_IPV6_RUN = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[A-Za-z][A-Za-z0-9]{0,15}:)??"
    r"(?P<run>(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]++)(?![0-9A-Za-z])"
)
# Longest textual IPv6: eight groups of four, or six and a dotted IPv4.
_IPV6_MAX_TEXT = 45


def _ipv4_candidates(text: str) -> Iterator[_Candidate]:
    for match in _IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(match.group())
        except ValueError:  # an octet over 255, or a leading zero
            continue
        yield match.start(), match.end(), _PRIORITY[IPV4], IPV4, str(address)


def _ipv6_text(run: str) -> str:
    """The run without sentence punctuation after it ("... at 2001:db8::1." or "2001:db8::1:")."""
    run = run.rstrip(".")
    if run.endswith(":") and not run.endswith("::"):
        run = run[:-1]
    return run


def _ipv6_candidates(text: str) -> Iterator[_Candidate]:
    for match in _IPV6_RUN.finditer(text):
        value = _ipv6_text(match.group("run"))
        if len(value) > _IPV6_MAX_TEXT:
            continue
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:  # "12:30", "a:b:c", a MAC address
            continue
        if sum(1 for group in value.split(":") if group) < 2:
            continue
        mapped = address.ipv4_mapped
        # Python 3.13 started to write mapped addresses as "::ffff:1.2.3.4"; fixing that form
        # keeps a canonical value, so its token, the same across Python versions.
        canonical = f"::ffff:{mapped}" if mapped is not None else address.compressed
        start = match.start("run")
        yield start, start + len(value), _PRIORITY[IPV6], IPV6, canonical


# ---------------------------------------------------------------------------------------------
# Phones. phonenumbers' matcher is exact but slow: every candidate costs a parse and a validity
# check (tens to hundreds of microseconds), it copies the rest of the text for each time-stamp-like
# candidate, and it gives up after max_tries failed candidates. Fed a whole document it is
# quadratic and silently stops finding numbers; fed a table of figures it crawls. So it only reads
# small windows around runs of digit blocks that pass _PhoneScreen, a necessary condition of its
# own validity rule checked with a few regular expressions.

# What the matcher takes for a number: blocks of at most 20 digits (the longest country code and
# national number) joined by up to four of its punctuation characters (copied from its private
# _VALID_PUNCTUATION; ":" and "," are not among them, so "12:30" or "1,234" never reach it).
_PHONE_PUNCTUATION = (
    "-x\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000"
    "()\uff08\uff09\uff3b\uff3d.\\[\\]/~\u2053\u223c\uff5e"
)
_DIGIT_CLUSTER = re.compile(
    rf"(?<!\d)\d{{1,20}}+(?!\d)(?:[{_PHONE_PUNCTUATION}]{{1,4}}+\d{{1,20}}+(?!\d))*+"
)
_DIGIT_BLOCK = re.compile(r"\d+")
_PLUS_SIGNS = ("+", "\uff0b")
# The most digits a written number can have: an international call prefix with a carrier code
# (five), a country code (three), a national number (seventeen), and one spare.
_PHONE_MAX_DIGITS = 26
# Context the matcher needs around a run: a leading "+" or "(", letters it must not touch,
# "extension 12".
_PHONE_MARGIN = 16
_PHONE_WINDOW = 4096
# Consecutive windows of one long stretch overlap by more than any phone number is long, so a
# number cut by one window is whole in the next; the longer match wins the overlap.
_PHONE_WINDOW_OVERLAP = 256
_NUMBER_TYPES = (
    "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip",
    "pager", "uan", "voicemail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _NationalPrefix:
    """A region's national_prefix_for_parsing ("0", "1", carrier codes)."""

    pattern: re.Pattern[str]
    transforms: bool  # it may rewrite the number, so where the number starts is unknown

    @classmethod
    def of(cls, metadata: phonenumbers.PhoneMetadata) -> _NationalPrefix | None:
        pattern = metadata.national_prefix_for_parsing
        if not pattern:
            return None
        return cls(re.compile(pattern), bool(metadata.national_prefix_transform_rule))


@dataclass(frozen=True, slots=True)
class _Numbering:
    """What phonenumbers requires of a national significant number under one country code: a
    length of some region of the code and a match of one of its number types' patterns."""

    lengths: tuple[int, ...]
    pattern: re.Pattern[str]
    national_prefix: _NationalPrefix | None  # of the code's main region, as parse() uses it


@functools.cache
def _numbering(code: int) -> _Numbering | None:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    metadatas = [
        metadata
        for region in regions
        if (
            metadata := phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        )
        is not None
    ]
    if not metadatas:
        return None
    lengths = sorted(
        {n for m in metadatas if m.general_desc is not None for n in m.general_desc.possible_length}
    )
    patterns = [
        desc.national_number_pattern
        for m in metadatas
        for name in _NUMBER_TYPES
        if (desc := getattr(m, name, None)) is not None and desc.national_number_pattern
    ]
    if not lengths or not patterns:
        return None
    return _Numbering(
        lengths=tuple(n for n in lengths if n > 0),
        pattern=re.compile("|".join(f"(?:{pattern})" for pattern in patterns)),
        national_prefix=_NationalPrefix.of(metadatas[0]),
    )


def _nsn_fits(numbering: _Numbering, digits: str, starts: set[int]) -> bool:
    """Whether ``digits[start:]`` looks valid for some ``start`` in ``starts``."""
    for start in starts:
        nsn = digits[start:]
        if len(nsn) in numbering.lengths and numbering.pattern.fullmatch(nsn):
            return True
    return False


def _after_national_prefix(
    prefix: _NationalPrefix | None, digits: str, starts: set[int]
) -> set[int] | None:
    """``starts`` and where the national prefix ends after each (phonenumbers strips it up to
    twice on the way), or None when a transforming prefix makes the outcome unpredictable."""
    if prefix is None:
        return starts
    reached = set(starts)
    frontier = set(starts)
    for _ in range(2):
        following = set()
        for start in frontier:
            match = prefix.pattern.match(digits, start)
            if match is None or match.end() == start:
                continue
            if prefix.transforms and match.lastindex is not None:
                return None
            following.add(match.end())
        reached |= following
        frontier = following
    return reached


class _PhoneScreen:
    """Could a run of digits (written with any punctuation) be a valid number for the matcher?

    Never "no" for a number phonenumbers would call valid: the national significant number it
    would parse is a suffix of the digits after an optional international prefix, country code and
    national prefix, and must match a number type of its country code. Rejects almost all other
    digit runs (figures, dates, ids) at the cost of a regular expression or two.
    """

    def __init__(self, region: str) -> None:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        code = metadata.country_code if metadata is not None else None
        home = _numbering(code) if code is not None else None
        if metadata is None or code is None or home is None:
            raise InvalidRequest(f"phone region {region!r} has no numbering plan")
        self._home = home
        # National numbers are read with the home region's prefix, which is not always the
        # country code's main region's (Trinidad's "868\1" rewrite, not the US's "1").
        self._home_prefix = _NationalPrefix.of(metadata)
        self._code = str(code)
        idd = metadata.international_prefix
        self._idd = re.compile(idd) if idd else None
        self._cache: dict[tuple[str, bool], bool] = {}
        # How many digits a national number can be written with, to skip most runs unchecked:
        # the number itself, after the home country code and up to two national prefixes. Only
        # a literal prefix ("1", "0") has a known length; a rewriting one adds up to four digits.
        prefix = metadata.national_prefix_for_parsing or ""
        if re.fullmatch(r"[0-9]*", prefix) and not metadata.national_prefix_transform_rule:
            spare = len(self._code) + 2 * len(prefix)
            national = {n + k for n in home.lengths for k in range(spare + 1)}
        else:
            national = set(range(max(1, home.lengths[0] - 4), _PHONE_MAX_DIGITS + 1))
        self._national_lengths = frozenset(national)
        self._all_lengths = frozenset(range(1, _PHONE_MAX_DIGITS + 1))
        # Fewer digits than this make no number at all: most clusters ("12", "2024") stop here.
        shortest_international = min(
            len(str(code)) + numbering.lengths[0]
            for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
            if (numbering := _numbering(code)) is not None
        )
        self.min_digits = min(min(national), shortest_international)

    def lengths(self, digits: str, after_plus: bool) -> frozenset[int]:
        """Digit counts worth checking for runs that start with ``digits``."""
        if after_plus or (self._idd is not None and self._idd.match(digits)):
            return self._all_lengths
        return self._national_lengths

    def could_be_number(self, digits: str, after_plus: bool) -> bool:
        key = (digits, after_plus)
        known = self._cache.get(key)
        if known is None:
            if len(self._cache) > 100_000:  # a bound on memory, not a correctness matter
                self._cache.clear()
            known = self._cache[key] = self._check(digits, after_plus)
        return known

    def _check(self, digits: str, after_plus: bool) -> bool:
        if after_plus and self._international(digits):
            return True
        if self._idd is not None:
            match = self._idd.match(digits)
            if match is not None and self._international(digits[match.end() :]):
                return True
        starts = {0}
        if digits.startswith(self._code):  # "1 415 555 2671": the home country code, no plus
            starts.add(len(self._code))
        reached = _after_national_prefix(self._home_prefix, digits, starts)
        return reached is None or _nsn_fits(self._home, digits, reached)

    @staticmethod
    def _international(digits: str) -> bool:
        if not digits or digits[0] == "0":
            return False
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                numbering = _numbering(code)
                if numbering is None:
                    return True  # no plan to check against: let the matcher decide
                reached = _after_national_prefix(numbering.national_prefix, digits, {size})
                return reached is None or _nsn_fits(numbering, digits, reached)
        return False


def _snap(text: str, start: int, end: int) -> tuple[int, int]:
    """Never cut a digit block: the matcher would take its end for a shorter number. Widen to
    the whole block (how the matcher reads the text around it), or, past a block too long to be
    part of a number, narrow."""
    widened = start
    while widened > 0 and text[widened - 1].isdigit() and start - widened <= 20:
        widened -= 1
    if widened == 0 or not text[widened - 1].isdigit():
        start = widened
    else:
        while start < len(text) and text[start].isdigit():
            start += 1
    widened = end
    while widened < len(text) and text[widened].isdigit() and widened - end <= 20:
        widened += 1
    if widened == len(text) or not text[widened].isdigit():
        end = widened
    else:
        while end > start and text[end - 1].isdigit():
            end -= 1
    return start, end


def _phone_spans(text: str, screen: _PhoneScreen) -> Iterator[tuple[int, int]]:
    """Spans of runs of whole digit blocks that ``screen`` lets through."""
    for cluster in _DIGIT_CLUSTER.finditer(text):
        if cluster.end() - cluster.start() < screen.min_digits:
            continue
        blocks = list(_DIGIT_BLOCK.finditer(text, cluster.start(), cluster.end()))
        parts = [phonenumbers.normalize_digits_only(block.group()) for block in blocks]
        digits = "".join(parts)
        if len(digits) < screen.min_digits:
            continue
        # Digits before each block, and which block ends after how many digits: a run of blocks
        # with a given digit count is a dictionary look-up away, not a walk.
        before = [0]
        for part in parts:
            before.append(before[-1] + len(part))
        last_block = {count: index for index, count in enumerate(before[1:])}
        lead = text[max(0, cluster.start() - 10) : cluster.start()]
        after_plus = any(sign in lead for sign in _PLUS_SIGNS)
        for first, block in enumerate(blocks):
            plus = after_plus and first == 0
            offset = before[first]
            reach: int | None = None
            for length in screen.lengths(digits[offset : offset + 8], plus):
                last = last_block.get(offset + length)
                if last is None or (reach is not None and blocks[last].end() <= reach):
                    continue
                if screen.could_be_number(digits[offset : offset + length], plus):
                    reach = blocks[last].end()
            if reach is not None:
                yield block.start(), reach


def _phone_windows(text: str, screen: _PhoneScreen) -> Iterator[tuple[int, int]]:
    current: tuple[int, int] | None = None
    for span_start, span_end in _phone_spans(text, screen):
        start, end = _snap(
            text, max(0, span_start - _PHONE_MARGIN), min(len(text), span_end + _PHONE_MARGIN)
        )
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


def _phone_candidates(text: str, region: str, screen: _PhoneScreen) -> Iterator[_Candidate]:
    step = _PHONE_WINDOW - _PHONE_WINDOW_OVERLAP
    for window_start, window_end in _phone_windows(text, screen):
        last_start = max(window_start + 1, window_end - _PHONE_WINDOW_OVERLAP)
        for start in range(window_start, last_start, step):
            end = min(window_end, start + _PHONE_WINDOW)
            window = text[start:end]
            # max_tries is there against degenerate texts; the window bounds the work instead.
            matcher = phonenumbers.PhoneNumberMatcher(
                window, region, leniency=phonenumbers.Leniency.VALID, max_tries=len(window) + 1
            )
            for found in matcher:
                canonical = phonenumbers.format_number(
                    found.number, phonenumbers.PhoneNumberFormat.E164
                )
                yield start + found.start, start + found.end, _PRIORITY[PHONE], PHONE, canonical


# ---------------------------------------------------------------------------------------------
# Tenant patterns.


class _Re2Match(Protocol):
    def span(self) -> tuple[int, int]: ...


class _Re2Pattern(Protocol):
    def search(self, text: bytes, pos: int, endpos: int) -> _Re2Match | None: ...

    def finditer(self, text: str) -> Iterator[_Re2Match]: ...


_MAX_CUSTOM_PATTERNS = 50
_MAX_PATTERN_LENGTH = 1000
# RE2 searches in linear time, but after each match it may read on to the end of the text looking
# for a longer one (think "\d(?:[\s\S]*END)?"): one search per match over the whole text is
# quadratic, minutes on a megabyte. Searching windows of at most _CUSTOM_WINDOW bytes bounds every
# search; the price is that a custom match over _CUSTOM_MAX_MATCH bytes is not reported.
_CUSTOM_MAX_MATCH = 256
_CUSTOM_WINDOW = 1024
# Texts on which a pattern that can match nothing shows it: ^, $, \b and \B all have a place to
# hold in one of them.
_EMPTY_PROBES = ("", "a", "ab", "a b", " ", "  ", "0", "-", "\n", "a\nb")


def _compile(custom: CustomPattern) -> _Re2Pattern:
    kind = custom.kind
    if not KIND_NAME.fullmatch(kind):
        raise InvalidRequest(
            f"custom PII kind {kind!r} must be 2-32 characters of A-Z, 0-9 and _, "
            "starting with a letter"
        )
    if kind in BUILTIN_KINDS:
        raise InvalidRequest(f"custom PII kind {kind!r} is a built-in kind; choose another name")
    if len(custom.pattern) > _MAX_PATTERN_LENGTH:
        raise InvalidRequest(
            f"the pattern for {kind} is longer than {_MAX_PATTERN_LENGTH} characters"
        )
    options = re2.Options()
    options.log_errors = False  # the error comes back to the caller, not to stderr
    try:
        compiled = cast(_Re2Pattern, re2.compile(custom.pattern, options))
    except re2.error as exc:
        raise InvalidRequest(
            f"the pattern for {kind} is not a valid RE2 regular expression ({exc}); RE2 has no "
            "look-around or back-references"
        ) from exc
    for probe in _EMPTY_PROBES:
        if any(start == end for start, end in (m.span() for m in compiled.finditer(probe))):
            raise InvalidRequest(
                f"the pattern for {kind} can match the empty string; it must match at least "
                "one character"
            )
    return compiled


def validate_custom_patterns(patterns: Sequence[CustomPattern]) -> None:
    """Raise InvalidRequest as ``PiiDetector`` would for these patterns, without building one."""
    if len(patterns) > _MAX_CUSTOM_PATTERNS:
        raise InvalidRequest(f"at most {_MAX_CUSTOM_PATTERNS} custom PII patterns are allowed")
    for custom in patterns:
        _compile(custom)


def _char_boundary(data: bytes, position: int) -> int:
    while position < len(data) and data[position] & 0xC0 == 0x80:
        position += 1
    return position


def _custom_spans(pattern: _Re2Pattern, data: bytes) -> Iterator[tuple[int, int]]:
    """Byte spans of ``pattern``'s matches in UTF-8 ``data``, leftmost first, none over
    ``_CUSTOM_MAX_MATCH`` bytes, each search reading at most ``_CUSTOM_WINDOW`` bytes."""
    size = len(data)
    position = 0
    while position < size:
        end = min(size, position + _CUSTOM_WINDOW)
        # A match starting before ``trusted`` and short enough to report ends inside the window,
        # so no earlier one was missed; one starting later may be cut off by the window's end.
        trusted = size if end == size else end - _CUSTOM_MAX_MATCH
        match = pattern.search(data, position, end)
        if match is None or match.span()[0] >= trusted:
            if end == size:
                return
            position = _char_boundary(data, trusted)
            continue
        start, stop = match.span()
        if stop == start:  # possible in some contexts even after the probes; never a value
            position = _char_boundary(data, start + 1)
            continue
        if stop - start <= _CUSTOM_MAX_MATCH:
            yield start, stop
        position = stop


class _OffsetMap:
    """UTF-8 byte offsets to str offsets, for increasing byte offsets, in linear time overall."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._byte = 0
        self._char = 0

    def __call__(self, byte_offset: int) -> int:
        if byte_offset < self._byte:
            self._byte = self._char = 0
        chunk = self._data[self._byte : byte_offset]
        self._char += len(chunk.decode("utf-8", "surrogatepass"))
        self._byte = byte_offset
        return self._char


# ---------------------------------------------------------------------------------------------


class PiiDetector:
    """Finds personal data in text. Build one per tenant configuration and reuse it: building
    compiles the tenant's patterns, finding is pure and thread-safe."""

    def __init__(self, *, phone_region: str = "US", custom: Sequence[CustomPattern] = ()) -> None:
        region = phone_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise InvalidRequest(
                f"phone region {phone_region!r} is not a known ISO 3166 region code such as US"
            )
        if len(custom) > _MAX_CUSTOM_PATTERNS:
            raise InvalidRequest(f"at most {_MAX_CUSTOM_PATTERNS} custom PII patterns are allowed")
        self._region = region
        self._phone_screen = _PhoneScreen(region)
        self._custom = [(pattern.kind, _compile(pattern)) for pattern in custom]

    def find(self, text: str) -> list[PiiMatch]:
        """Matches sorted by start, not overlapping, ``text[start:end] == value``.

        Where candidates overlap the longer wins, then the earlier, then EMAIL, IBAN, CARD, SSN,
        IPV6, IPV4, PHONE and the custom kinds in the tenant's order. Tokens already in the text
        ("<EMAIL:3f9a1c2b04d1>") are left alone, so scrubbing scrubbed text changes nothing and
        a token pasted into a search query still finds its documents.
        """
        candidates: list[_Candidate] = []
        candidates.extend(_email_candidates(text))
        candidates.extend(_iban_candidates(text))
        candidates.extend(_card_candidates(text))
        candidates.extend(_ssn_candidates(text))
        candidates.extend(_ipv6_candidates(text))
        candidates.extend(_ipv4_candidates(text))
        candidates.extend(_phone_candidates(text, self._region, self._phone_screen))
        candidates.extend(self._custom_candidates(text))
        if not candidates:
            return []

        taken = bytearray(len(text))
        for token in TOKEN.finditer(text):
            taken[token.start() : token.end()] = b"\x01" * (token.end() - token.start())
        candidates.sort(key=lambda c: (c[0] - c[1], c[0], c[2]))
        chosen: list[_Candidate] = []
        for candidate in candidates:
            start, end = candidate[0], candidate[1]
            if taken.find(1, start, end) == -1:
                taken[start:end] = b"\x01" * (end - start)
                chosen.append(candidate)
        chosen.sort()
        return [
            PiiMatch(kind, start, end, text[start:end], canonical)
            for start, end, _, kind, canonical in chosen
        ]

    def _custom_candidates(self, text: str) -> Iterator[_Candidate]:
        if not self._custom:
            return
        data = text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(text)
        for index, (kind, pattern) in enumerate(self._custom):
            to_char: Callable[[int], int] = (
                (lambda offset: offset) if ascii_only else _OffsetMap(data)
            )
            for start, stop in _custom_spans(pattern, data):
                # RE2 may match bytes of a lone surrogate's (invalid) encoding one by one; a span
                # must begin and end on characters to be a piece of the text.
                if _char_boundary(data, start) != start or _char_boundary(data, stop) != stop:
                    continue
                char_start = to_char(start)
                char_end = to_char(stop)
                value = text[char_start:char_end]
                yield char_start, char_end, _CUSTOM_PRIORITY + index, kind, value


def scrub(
    text: str,
    matches: Sequence[PiiMatch],
    policy: PiiPolicy,
    token_for: Callable[[str, str], str],
) -> Scrubbed:
    """Rewrite ``text``: each match becomes ``token_for(kind, canonical)`` (TOKENISE), its
    redaction ``[KIND]`` (REDACT) or stays as it is (KEEP). Text outside matches is unchanged.

    ``matches`` must be non-overlapping spans of ``text`` such as ``PiiDetector.find`` returns;
    anything else is a programming error (ValueError).
    """
    pieces: list[str] = []
    copied = 0  # text[:copied] is in pieces
    previous_end = 0
    counts: dict[str, int] = {}
    tokens: dict[tuple[str, str], str] = {}
    tokenised: dict[str, TokenisedValue] = {}
    for match in sorted(matches, key=lambda m: m.start):
        if match.start < previous_end or match.start >= match.end or match.end > len(text):
            raise ValueError("matches must be non-empty, non-overlapping spans of the text")
        if text[match.start : match.end] != match.value:
            raise ValueError(f"match at {match.start} does not hold its value: another text?")
        previous_end = match.end
        counts[match.kind] = counts.get(match.kind, 0) + 1
        action = policy.action(match.kind)
        if action is PiiAction.KEEP:
            continue
        pieces.append(text[copied : match.start])
        copied = match.end
        if action is PiiAction.REDACT:
            pieces.append(redaction(match.kind))
            continue
        key = (match.kind, match.canonical)
        token = tokens.get(key)
        if token is None:  # one HMAC per distinct value
            token = tokens[key] = token_for(match.kind, match.canonical)
            tokenised.setdefault(token, TokenisedValue(token, match.kind, match.canonical))
        pieces.append(token)
    pieces.append(text[copied:])
    return Scrubbed("".join(pieces), list(tokenised.values()), counts)

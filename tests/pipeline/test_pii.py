"""PiiDetector and scrub: each kind found and not over-found, canonical forms, overlaps, tenant
patterns, policy actions, and properties over generated text."""

from __future__ import annotations

import hashlib
import itertools
import re
import string

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spine.domain.privacy import (
    BUILTIN_KINDS,
    CARD,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    PHONE,
    SSN,
    CustomPattern,
    PiiAction,
    PiiPolicy,
    format_token,
    redaction,
)
from spine.errors import InvalidRequest
from spine.pipeline.pii import (
    PiiDetector,
    PiiMatch,
    TokenisedValue,
    scrub,
    validate_custom_patterns,
)

DETECTOR = PiiDetector()


def found(text: str, detector: PiiDetector = DETECTOR) -> list[tuple[str, str]]:
    return [(match.kind, match.value) for match in detector.find(text)]


def canonicals(text: str, kind: str, detector: PiiDetector = DETECTOR) -> list[str]:
    return [match.canonical for match in detector.find(text) if match.kind == kind]


def token_for(kind: str, canonical: str) -> str:
    return format_token(kind, hashlib.sha256(f"{kind}\0{canonical}".encode()).hexdigest())


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it pass Luhn."""
    for check in "0123456789":
        digits = body + check
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
            for i, d in enumerate(int(c) for c in reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def iban_with_check(country: str, bban: str) -> str:
    """A valid IBAN: the check digits that make ISO 13616's mod 97 come out at 1."""
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def group4(value: str, separator: str = " ") -> str:
    return separator.join(value[i : i + 4] for i in range(0, len(value), 4))


# ---------------------------------------------------------------------------------------------
# E-mail


@pytest.mark.parametrize(
    "address",
    ["ann.lee@example.com", "a+tag@sub.example.co.uk", "first_last-1@x-y.org", "ANN@EXAMPLE.ORG"],
)
def test_email_is_found(address: str) -> None:
    assert found(f"Write to {address} today") == [(EMAIL, address)]


def test_email_excludes_sentence_punctuation_and_quotes() -> None:
    assert found("Write to ann@example.org.") == [(EMAIL, "ann@example.org")]
    assert found("name='ann@example.org';") == [(EMAIL, "ann@example.org")]
    assert found("<mailto:ann@example.org>") == [(EMAIL, "ann@example.org")]


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost",
        "foo@bar",
        "@example.com",
        "ann@-bad.example.com",
        "ann@example.c",
        "ann.@example.com",
        "a" * 100_000 + "@",
        "@" * 10_000,
        "a@" * 10_000,
    ],
)
def test_not_an_email(text: str) -> None:
    assert [kind for kind, _ in found(text)] == []


def test_email_canonical_is_lower_case() -> None:
    assert canonicals("Ann.Lee@Example.COM and ann.lee@example.com", EMAIL) == [
        "ann.lee@example.com",
        "ann.lee@example.com",
    ]


# ---------------------------------------------------------------------------------------------
# Phone


def test_phone_written_three_ways_has_one_canonical() -> None:
    text = "Call (415) 555-2671, 415.555.2671 or +1 415 555 2671."
    assert found(text) == [
        (PHONE, "(415) 555-2671"),
        (PHONE, "415.555.2671"),
        (PHONE, "+1 415 555 2671"),
    ]
    assert set(canonicals(text, PHONE)) == {"+14155552671"}


def test_international_number_is_found_in_any_region() -> None:
    for region in ("US", "DE", "JP"):
        detector = PiiDetector(phone_region=region)
        assert canonicals("London: +44 20 7946 0958.", PHONE, detector) == ["+442079460958"]


def test_national_number_needs_its_region() -> None:
    text = "Ruf an: 030 901820"
    assert canonicals(text, PHONE, PiiDetector(phone_region="de")) == ["+4930901820"]
    assert canonicals(text, PHONE) == []


def test_home_country_code_without_plus() -> None:
    detector = PiiDetector(phone_region="GB")
    for text in ("Tel 44 20 7946 0958", "Tel 442079460958"):
        assert canonicals(text, PHONE, detector) == ["+442079460958"]
        assert canonicals(text, PHONE) == []


def test_phone_extension_is_part_of_the_match() -> None:
    assert found("Tel (212) 555-0100 ext. 1234.") == [(PHONE, "(212) 555-0100 ext. 1234")]
    assert canonicals("Tel (212) 555-0100 ext. 1234.", PHONE) == ["+12125550100"]


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-01-15 at 12:30",
        "at 12:30:45 or 08:00",
        "2012-01-02 08:00",
        "call 555-0100",
        "order 12345678",
        "pages 211-227 (2003)",
        "12.03.2024",
        "415555267112345678901234",  # a number inside a longer one is not a number
        "1 " * 5_000,
    ],
)
def test_not_a_phone(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == PHONE] == []


def test_many_phone_numbers_in_one_text_are_all_found() -> None:
    # phonenumbers' matcher alone gives up after max_tries candidates; windows must not.
    numbers = [f"(415) 555-{n:04d}" for n in range(2000, 2400)]
    text = " filler 2024-01-01 12.5 ".join(numbers)
    assert [value for kind, value in found(text) if kind == PHONE] == numbers


def test_unknown_phone_region_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="phone region"):
        PiiDetector(phone_region="XX")


# ---------------------------------------------------------------------------------------------
# Payment cards (test numbers published by the card networks' processors)

CARDS = {
    "visa": "4111111111111111",
    "visa13": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard 2-series": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "jcb": "3530111333300000",
    "diners": "30569309025904",
    "unionpay": "6200000000000005",
}


@pytest.mark.parametrize("number", CARDS.values(), ids=CARDS.keys())
def test_card_is_found(number: str) -> None:
    assert found(f"card {number} exp 12/29") == [(CARD, number)]


@pytest.mark.parametrize(
    "written",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "3782 822463 10005"],
)
def test_grouped_card_has_digits_only_canonical(written: str) -> None:
    assert found(f"pay with {written}.") == [(CARD, written)]
    assert canonicals(written, CARD) == [written.replace(" ", "").replace("-", "")]


def test_card_followed_by_cvv_or_preceded_by_a_number() -> None:
    assert found("4111 1111 1111 1111 123") == [(CARD, "4111 1111 1111 1111")]
    assert found("ref 12 4111 1111 1111 1111") == [(CARD, "4111 1111 1111 1111")]
    assert found("A0 4000000000000002") == [(CARD, "4000000000000002")]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        luhn_complete("123456789012345"),  # Luhn passes, no issuer starts with 1
        luhn_complete("5" + "0" * 13),  # Mastercard prefix at 15 digits, not its length
        "4111 1111-1111 1111",  # mixed separators
        "41 11 11 11 11 11 11 11",  # not grouped as cards are printed
        "x4111111111111111",
        "4111111111111111abc",
        "0.4111111111111111",
        "4111111111111111,5",
        "9" + "4111111111111111",
    ],
)
def test_not_a_card(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == CARD] == []


# ---------------------------------------------------------------------------------------------
# IBAN


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "NO93 8601 1117 947",
        "FR14 2004 1010 0505 0001 3M02 606",
        "gb82west12345698765432",
    ],
)
def test_iban_is_found(iban: str) -> None:
    assert found(f"IBAN: {iban}, thanks") == [(IBAN, iban)]
    assert canonicals(iban, IBAN) == [iban.replace(" ", "").upper()]


def test_iban_ends_where_its_country_says() -> None:
    text = "DE89 3704 0044 0532 0130 00 EUR GB82 WEST 1234 5698 7654 32 ABCD"
    assert found(text) == [
        (IBAN, "DE89 3704 0044 0532 0130 00"),
        (IBAN, "GB82 WEST 1234 5698 7654 32"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "DE88 3704 0044 0532 0130 00",  # check digits wrong
        "DE89 3704 0044 0532 0130 0",  # one character short
        "DE89370400440532013000X",  # runs on into a longer token
        "DE89 37040044 0532 0130 00",  # not grouped in fours
        "XX89 3704 0044 0532 0130 00",  # no such country
        "DE89 3704 0044 0532 0130 01",
    ],
)
def test_not_an_iban(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == IBAN] == []


def test_card_digits_inside_an_iban_are_not_a_card() -> None:
    iban = iban_with_check("CZ", "4111111111111111" + "0000")  # Czech BBANs are 20 digits
    assert found(f"pay {group4(iban)} now") == [(IBAN, group4(iban))]
    assert found(f"pay {iban} now") == [(IBAN, iban)]


# ---------------------------------------------------------------------------------------------
# SSN


def test_ssn_is_found() -> None:
    assert found("SSN 123-45-6789.") == [(SSN, "123-45-6789")]
    assert canonicals("SSN 123-45-6789.", SSN) == ["123-45-6789"]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123456789",
        "1123-45-6789",
        "123-45-67890",
        "123-45-6789-1",
        "9-123-45-6789",
    ],
)
def test_not_an_ssn(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == SSN] == []


# ---------------------------------------------------------------------------------------------
# IP addresses


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("from 192.168.0.1 at noon", "192.168.0.1"),
        ("server 10.0.0.1.", "10.0.0.1"),
        ("connect 10.0.0.1:8080", "10.0.0.1"),
        ("net 172.16.0.0/12", "172.16.0.0"),
    ],
)
def test_ipv4_is_found(text: str, value: str) -> None:
    assert found(text) == [(IPV4, value)]
    assert canonicals(text, IPV4) == [value]


@pytest.mark.parametrize(
    "text",
    ["256.1.1.1", "version 1.2.3.4.5", "v1.2.3.4", "01.2.3.4", "1.2.3", "12.03.2024", "1.2.3.4a"],
)
def test_not_an_ipv4(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == IPV4] == []


@pytest.mark.parametrize(
    ("text", "value", "canonical"),
    [
        ("from 2001:db8::1 today", "2001:db8::1", "2001:db8::1"),
        (
            "full 2001:0DB8:0000:0000:0000:0000:0000:0001.",
            "2001:0DB8:0000:0000:0000:0000:0000:0001",
            "2001:db8::1",
        ),
        ("url [2001:db8::1]:443", "2001:db8::1", "2001:db8::1"),
        ("link fe80::1:2%eth0", "fe80::1:2", "fe80::1:2"),
        ("mapped ::ffff:192.0.2.1 here", "::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("nat64 64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
        ("log ip:2001:db8::1", "2001:db8::1", "2001:db8::1"),
        ("IPv6:2001:DB8::1", "2001:DB8::1", "2001:db8::1"),
        ("host dead:beef::1", "dead:beef::1", "dead:beef::1"),
    ],
)
def test_ipv6_is_found(text: str, value: str, canonical: str) -> None:
    # The embedded IPv4 of the last two is not reported on its own: the longer match wins.
    assert found(text) == [(IPV6, value)]
    assert canonicals(text, IPV6) == [canonical]


@pytest.mark.parametrize(
    "text",
    [
        "at 12:30",
        "at 12:30:45",
        "::",
        "loopback ::1",
        "prefix fe80::",
        "mac 00:1A:2B:3C:4D:5E",
        "std::vector",
        "2001:db8::1g",
        ":" * 10_000,
        "1:" * 10_000,
    ],
)
def test_not_an_ipv6(text: str) -> None:
    assert [kind for kind, _ in found(text) if kind == IPV6] == []


# ---------------------------------------------------------------------------------------------
# Overlaps


def test_card_digits_in_a_phone_like_text_are_one_card() -> None:
    assert found("call +1 4111 1111 1111 1111") == [(CARD, "4111 1111 1111 1111")]


def test_longer_match_wins() -> None:
    assert found("card 4111111111111111@example.com") == [(EMAIL, "4111111111111111@example.com")]
    custom = PiiDetector(custom=[CustomPattern("TICKET", r"REF ann@example\.org 42")])
    assert found("see REF ann@example.org 42.", custom) == [("TICKET", "REF ann@example.org 42")]


def test_equal_length_goes_to_the_built_in_kind_then_the_earlier_custom_pattern() -> None:
    detector = PiiDetector(
        custom=[
            CustomPattern("CONTACT", r"[a-z]+@[a-z]+\.com"),
            CustomPattern("FIRST", r"ab"),
            CustomPattern("SECOND", r"[a-z]b"),
        ]
    )
    assert found("bob@example.com", detector) == [(EMAIL, "bob@example.com")]
    # Same start, same length, two custom kinds: the tenant's first pattern wins.
    assert found("ab", detector) == [("FIRST", "ab")]
    # Same length, different starts: the earlier wins, whatever the pattern order.
    later_first = PiiDetector(custom=[CustomPattern("LATE", r"bb"), CustomPattern("EARLY", r"cb")])
    assert found("cbb", later_first) == [("EARLY", "cb")]


def test_existing_tokens_are_left_alone() -> None:
    detector = PiiDetector(custom=[CustomPattern("HEX", r"[0-9a-f]{12}")])
    token = format_token(EMAIL, "3f9a1c2b04d1" + "0" * 52)
    assert found(f"query {token} and 0123456789ab", detector) == [("HEX", "0123456789ab")]


# ---------------------------------------------------------------------------------------------
# Tenant patterns


def test_custom_pattern_is_found_with_character_offsets() -> None:
    detector = PiiDetector(custom=[CustomPattern("EMPLOYEE_ID", r"EMP-\d{5}")])
    text = "naïve café 😀 EMP-12345 über EMP-54321"
    matches = detector.find(text)
    assert [(m.kind, m.value, m.canonical) for m in matches] == [
        ("EMPLOYEE_ID", "EMP-12345", "EMP-12345"),
        ("EMPLOYEE_ID", "EMP-54321", "EMP-54321"),
    ]
    assert all(text[m.start : m.end] == m.value for m in matches)


def test_custom_matches_across_search_windows_are_all_found() -> None:
    detector = PiiDetector(custom=[CustomPattern("EMPLOYEE_ID", r"EMP-\d{5}")])
    # Matches fall on every offset relative to the 1 KiB windows, some with multi-byte padding.
    text = "".join(("é" if n % 3 else "x") * (n % 37) + f"EMP-{n:05d} " for n in range(3000))
    assert [m.value for m in detector.find(text)] == [f"EMP-{n:05d}" for n in range(3000)]


def test_custom_pattern_that_reads_on_stays_correct() -> None:
    # After each match RE2 looks for the longer alternative up to the end of its input.
    detector = PiiDetector(custom=[CustomPattern("DIGIT", r"\d(?:[\s\S]*QQQZ)?")])
    assert len(detector.find("7" * 5000)) == 5000
    assert found("1 abc QQQZ 2", detector) == [("DIGIT", "1 abc QQQZ"), ("DIGIT", "2")]


def test_custom_match_over_256_bytes_is_not_reported() -> None:
    detector = PiiDetector(custom=[CustomPattern("BLOB", r"Z+")])
    assert found("Z" * 256, detector) == [("BLOB", "Z" * 256)]
    assert found("Z" * 300, detector) == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (CustomPattern("EMPLOYEE_ID", r"EMP-("), "not a valid RE2"),
        (CustomPattern("EMPLOYEE_ID", r"EMP(?=-)"), "not a valid RE2"),
        (CustomPattern("EMPLOYEE_ID", r"(a)\1"), "not a valid RE2"),
        (CustomPattern("EMPLOYEE_ID", r"x*"), "empty string"),
        (CustomPattern("EMPLOYEE_ID", r"\b"), "empty string"),
        (CustomPattern("EMPLOYEE_ID", r"^"), "empty string"),
        (CustomPattern("EMPLOYEE_ID", r"(?:EMP)?$"), "empty string"),
        (CustomPattern("EMAIL", r"EMP-\d+"), "built-in"),
        (CustomPattern("PHONE", r"EMP-\d+"), "built-in"),
        (CustomPattern("employee", r"EMP-\d+"), "must be 2-32"),
        (CustomPattern("E", r"EMP-\d+"), "must be 2-32"),
        (CustomPattern("1D", r"EMP-\d+"), "must be 2-32"),
        (CustomPattern("EMPLOYEE_ID", "a" * 1001), "longer than"),
    ],
)
def test_bad_custom_pattern_is_rejected(pattern: CustomPattern, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate_custom_patterns([pattern])
    with pytest.raises(InvalidRequest, match=message):
        PiiDetector(custom=[CustomPattern("GOOD", r"G\d"), pattern])


def test_valid_custom_patterns_pass_validation() -> None:
    validate_custom_patterns(
        [CustomPattern("EMPLOYEE_ID", r"EMP-\d{5}"), CustomPattern("EMPLOYEE_ID", r"E\d{7}")]
    )


def test_too_many_custom_patterns_are_rejected() -> None:
    patterns = [CustomPattern(f"KIND_{n}", rf"K{n}-\d+") for n in range(51)]
    with pytest.raises(InvalidRequest, match="at most 50"):
        validate_custom_patterns(patterns)
    validate_custom_patterns(patterns[:50])


# ---------------------------------------------------------------------------------------------
# scrub

TEXT = "Mail Ann@Example.com or ann@example.com, call (415) 555-2671, SSN 123-45-6789."


def test_scrub_tokenises_by_default_one_token_per_value() -> None:
    calls: list[tuple[str, str]] = []

    def counting_token_for(kind: str, canonical: str) -> str:
        calls.append((kind, canonical))
        return token_for(kind, canonical)

    result = scrub(TEXT, DETECTOR.find(TEXT), PiiPolicy(), counting_token_for)
    email = token_for(EMAIL, "ann@example.com")
    phone = token_for(PHONE, "+14155552671")
    ssn = token_for(SSN, "123-45-6789")
    assert result.text == f"Mail {email} or {email}, call {phone}, SSN {ssn}."
    assert result.tokenised == [
        TokenisedValue(email, EMAIL, "ann@example.com"),
        TokenisedValue(phone, PHONE, "+14155552671"),
        TokenisedValue(ssn, SSN, "123-45-6789"),
    ]
    assert result.counts == {EMAIL: 2, PHONE: 1, SSN: 1}
    assert calls == [(EMAIL, "ann@example.com"), (PHONE, "+14155552671"), (SSN, "123-45-6789")]


def test_scrub_redacts_and_keeps() -> None:
    policy = PiiPolicy({EMAIL: PiiAction.REDACT, PHONE: PiiAction.KEEP})
    result = scrub(TEXT, DETECTOR.find(TEXT), policy, token_for)
    ssn = token_for(SSN, "123-45-6789")
    assert result.text == (
        f"Mail {redaction(EMAIL)} or {redaction(EMAIL)}, call (415) 555-2671, SSN {ssn}."
    )
    assert result.tokenised == [TokenisedValue(ssn, SSN, "123-45-6789")]
    assert result.counts == {EMAIL: 2, PHONE: 1, SSN: 1}


def test_scrub_keeping_everything_changes_nothing() -> None:
    matches = DETECTOR.find(TEXT)
    policy = PiiPolicy(dict.fromkeys(BUILTIN_KINDS, PiiAction.KEEP))
    result = scrub(TEXT, matches, policy, token_for)
    assert result.text == TEXT
    assert all(result.text[m.start : m.end] == m.value for m in matches)
    assert result.tokenised == []
    assert result.counts == {EMAIL: 2, PHONE: 1, SSN: 1}


def test_kept_values_before_a_replacement_keep_their_offsets() -> None:
    text = "call (415) 555-2671 or mail ann@example.com"
    matches = DETECTOR.find(text)
    result = scrub(text, matches, PiiPolicy({PHONE: PiiAction.KEEP}), token_for)
    phone = matches[0]
    assert result.text[phone.start : phone.end] == phone.value
    assert result.text.endswith(token_for(EMAIL, "ann@example.com"))


def test_scrub_applies_custom_kinds_policy() -> None:
    detector = PiiDetector(custom=[CustomPattern("EMPLOYEE_ID", r"EMP-\d{5}")])
    text = "EMP-12345 wrote to ann@example.com"
    result = scrub(
        text, detector.find(text), PiiPolicy({"EMPLOYEE_ID": PiiAction.REDACT}), token_for
    )
    assert result.text == f"[EMPLOYEE_ID] wrote to {token_for(EMAIL, 'ann@example.com')}"


def test_scrubbed_text_scrubs_to_itself() -> None:
    once = scrub(TEXT, DETECTOR.find(TEXT), PiiPolicy(), token_for).text
    assert DETECTOR.find(once) == []


def test_scrub_rejects_matches_of_another_text() -> None:
    with pytest.raises(ValueError, match="non-overlapping"):
        scrub("abcdef", [PiiMatch("X", 0, 3, "abc", "abc"), PiiMatch("Y", 2, 4, "cd", "cd")],
              PiiPolicy(), token_for)  # fmt: skip
    with pytest.raises(ValueError, match="does not hold"):
        scrub("abcdef", [PiiMatch("X", 0, 3, "xyz", "xyz")], PiiPolicy(), token_for)


# ---------------------------------------------------------------------------------------------
# Properties

_CARD_PREFIXES = [
    ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
    ("6011", 16), ("65", 16), ("3528", 16), ("3589", 16), ("36", 14), ("62", 16), ("4", 19),
]  # fmt: skip


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(_CARD_PREFIXES))
    body = draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                        max_size=length - len(prefix) - 1))  # fmt: skip
    number = luhn_complete(prefix + body)
    style = draw(st.sampled_from(["solid", " ", "-"]))
    if style == "solid":
        return number
    if length in (14, 15):  # Amex and Diners print 4-6-rest
        return style.join((number[:4], number[4:10], number[10:]))
    return group4(number, style)


_LETTERS = string.ascii_uppercase + string.digits


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country, length = draw(st.sampled_from([("DE", 22), ("GB", 22), ("FR", 27), ("NO", 15),
                                            ("NL", 18), ("MT", 31), ("CH", 21)]))  # fmt: skip
    bban = draw(st.text(_LETTERS, min_size=length - 4, max_size=length - 4))
    iban = iban_with_check(country, bban)
    return draw(st.sampled_from([iban, group4(iban), iban.lower()]))


_ATOM = st.text(string.ascii_letters + string.digits + "_%+-", min_size=1, max_size=12)
_LABEL = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(_ATOM, min_size=1, max_size=3)))
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    tld = draw(st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True))
    return f"{local}@{'.'.join([*labels, tld])}"


# Prose around the values: letters, spaces, punctuation, digits, accents and emoji.
_FILLER = st.text(string.ascii_letters + string.digits + " .,;:!?()-\n'\"éü😀", max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(emails(), cards(), ibans()),
    before=_FILLER,
    after=_FILLER,
    action=st.sampled_from([PiiAction.TOKENISE, PiiAction.REDACT]),
)
def test_scrub_leaves_no_tokenised_or_redacted_value(
    value: str, before: str, after: str, action: PiiAction
) -> None:
    text = f"{before} {value} {after}"
    policy = PiiPolicy(dict.fromkeys(BUILTIN_KINDS, action))
    result = scrub(text, DETECTOR.find(text), policy, token_for)
    assert value not in result.text


_PII_FRAGMENTS = [
    "ann@example.com", "(415) 555-2671", "+44 20 7946 0958", "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00", "123-45-6789", "192.168.0.1", "2001:db8::1",
    "::ffff:10.0.0.1", "EMP-12345", "<EMAIL:3f9a1c2b04d1>", "12:30", "1.2.3.4.5",
]  # fmt: skip
_PROPERTY_DETECTOR = PiiDetector(
    custom=[CustomPattern("EMPLOYEE_ID", r"EMP-\d{5}"), CustomPattern("WORDY", r"[a-z]{3}\d")]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_PII_FRAGMENTS),
            st.text("0123456789abcdefABCDEF.:-@ +()xX/\né😀", max_size=30),
        ),
        max_size=12,
    )
)
def test_find_returns_sorted_disjoint_exact_matches(parts: list[str]) -> None:
    text = "".join(parts)
    matches = _PROPERTY_DETECTOR.find(text)
    for previous, match in itertools.pairwise(matches):
        assert previous.end <= match.start
    for match in matches:
        assert 0 <= match.start < match.end <= len(text)
        assert text[match.start : match.end] == match.value
        assert match.kind in (*BUILTIN_KINDS, "EMPLOYEE_ID", "WORDY")


@settings(max_examples=200, deadline=None)
@given(st.text("ABab~ é😀\nß", max_size=3000))
def test_custom_matches_equal_python_re_on_any_text(text: str) -> None:
    pattern = r"[A-Z]{2}~[a-z]{1,3}"
    detector = PiiDetector(custom=[CustomPattern("CODE", pattern)])
    expected = [(m.start(), m.end()) for m in re.finditer(pattern, text)]
    assert [(m.start, m.end) for m in detector.find(text)] == expected


_PHONE_REGIONS = ["US", "DE", "GB", "FR", "IN", "BR", "TT", "JP", "AR"]
_PHONE_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]
_EXAMPLE_NUMBERS = [
    number
    for region in _PHONE_REGIONS
    for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
]


@st.composite
def phone_texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            number = draw(st.sampled_from(_EXAMPLE_NUMBERS))
            written = phonenumbers.format_number(number, draw(st.sampled_from(_PHONE_FORMATS)))
            # "+44 20 7946 0958" also appears as "44 20 7946 0958": a home number still parses.
            parts.append(written.lstrip("+") if draw(st.booleans()) else written)
        else:
            parts.append(draw(st.text("0123456789 -.()/+x", max_size=16)))
        parts.append(draw(st.sampled_from([" ", ", call ", " or ", "\n", "; fax: "])))
    return "".join(parts)


@settings(max_examples=150, deadline=None)
@given(text=phone_texts(), region=st.sampled_from(_PHONE_REGIONS))
def test_phones_are_those_the_matcher_finds_in_the_whole_text(text: str, region: str) -> None:
    # The windows and the digit screen in front of phonenumbers' matcher only save time: every
    # number it finds in the whole text is found, unless a longer value of another kind won.
    matches = PiiDetector(phone_region=region).find(text)
    reference = phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.VALID, max_tries=10**9
    )
    for number in reference:
        overlapping = [m for m in matches if m.start < number.end and number.start < m.end]
        assert overlapping, f"{number.raw_string!r} not found"
        if all(m.kind == PHONE for m in overlapping):
            assert [(m.start, m.end) for m in overlapping] == [(number.start, number.end)]

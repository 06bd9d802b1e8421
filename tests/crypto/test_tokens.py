"""Registration tokens and API keys: form, entropy source, keyed hashes."""

from __future__ import annotations

import re

import pytest

from swarmdeploy.crypto import tokens
from swarmdeploy.crypto.errors import InvalidToken

SECRET = b"s" * 32


def test_generate_token_has_three_hex_groups() -> None:
    token = tokens.generate_token()
    assert re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}", token)


def test_generate_token_many_are_distinct() -> None:
    assert len({tokens.generate_token() for _ in range(2000)}) == 2000


def test_normalize_token_typed_by_hand_is_canonical() -> None:
    assert tokens.normalize_token("  6FA0-3261-ECE9\n") == "6fa0-3261-ece9"


@pytest.mark.parametrize(
    "bad", ["", "6fa0-3261", "6fa0-3261-ece", "6fa03261ece9", "zzzz-3261-ece9"]
)
def test_normalize_token_malformed_raises(bad: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.normalize_token(bad)


def test_hash_token_same_token_any_case_same_hash() -> None:
    assert tokens.hash_token(SECRET, "6fa0-3261-ece9") == tokens.hash_token(
        SECRET, "6FA0-3261-ECE9"
    )


def test_hash_token_depends_on_secret() -> None:
    other = b"t" * 32
    assert tokens.hash_token(SECRET, "6fa0-3261-ece9") != tokens.hash_token(other, "6fa0-3261-ece9")


def test_keyed_hash_purposes_are_separated() -> None:
    value = "6fa0-3261-ece9"
    assert tokens.hash_token(SECRET, value) != tokens.hash_api_key(SECRET, value)


def test_keyed_hash_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        tokens.keyed_hash(b"short", "x", purpose="p")


def test_api_key_round_trip_gives_its_id() -> None:
    key_id, plaintext = tokens.generate_api_key()
    assert plaintext.startswith("sdk_")
    assert tokens.parse_api_key(plaintext) == key_id


@pytest.mark.parametrize(
    "bad", ["", "sdk_", "Bearer x", "sdk_0123456789ab_short", "xyz_0123456789ab_" + "a" * 43]
)
def test_parse_api_key_malformed_raises(bad: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.parse_api_key(bad)


def test_digests_equal_compares_content() -> None:
    assert tokens.digests_equal(b"abc", b"abc")
    assert not tokens.digests_equal(b"abc", b"abd")

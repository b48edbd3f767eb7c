"""Secret-looking payload fields are masked for eyes, at any depth; others are kept."""

from __future__ import annotations

import pytest

from gladd.admin.masking import MASK, looks_secret, mask_secrets


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "api_key",
        "apiKey",
        "x-auth-token",
        "db_password",
        "client_secret",
        "privateKey",
        "Authorization",
        "AWS_SECRET_ACCESS_KEY",
        "passwd",
        "credentials",
    ],
)
def test_secret_names_are_recognised(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["monkey", "keyboard", "tokenizer_name", "name", "url"])
def test_ordinary_names_are_not(name: str) -> None:
    assert not looks_secret(name)


def test_masking_reaches_nested_objects_and_lists_and_leaves_the_original() -> None:
    payload = {
        "url": "https://example.test",
        "headers": {"Authorization": "Bearer abc", "Accept": "json"},
        "accounts": [{"user": "ann", "password": "pw1"}, {"user": "bob", "api_key": "k"}],
    }
    masked = mask_secrets(payload)
    assert masked == {
        "url": "https://example.test",
        "headers": {"Authorization": MASK, "Accept": "json"},
        "accounts": [{"user": "ann", "password": MASK}, {"user": "bob", "api_key": MASK}],
    }
    assert payload["headers"]["Authorization"] == "Bearer abc"

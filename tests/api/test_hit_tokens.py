"""Signed hit tokens (api/hit_tokens.py): what verifies, what does not, and why."""

from __future__ import annotations

import pytest

from shopsearch.api.hit_tokens import HitSigner, TokenError, signing_key
from shopsearch.settings import load_settings

T = 1_700_000_000


@pytest.fixture
def signer():
    return HitSigner(b"k" * 32)


def reason(signer, qid, pid, token, now=T + 60, max_age_s=3600):
    with pytest.raises(TokenError) as info:
        signer.verify(qid, pid, token, now=now, max_age_s=max_age_s)
    return info.value.reason


def test_a_token_verifies_only_for_its_query_product_and_time(signer):
    token = signer.token("q-1", "p1", T)
    assert len(token) == len(str(T)) + 1 + 22 and signer.verify("q-1", "p1", token, now=T + 60, max_age_s=3600) == T
    assert reason(signer, "q-1", "p2", token) == "invalid"  # another product
    assert reason(signer, "q-2", "p1", token) == "invalid"  # another query
    assert reason(signer, "q-1", "p1", f"{T - 5}.{token.split('.')[1]}") == "invalid"  # the time altered
    assert reason(HitSigner(b"x" * 32), "q-1", "p1", token) == "invalid"  # another key
    assert reason(signer, "q-1", "p1", None) == "missing"
    assert reason(signer, "q-1", "p1", "garbage") == "malformed"
    assert reason(signer, "q-1", "p1", token, now=T + 3601) == "stale"
    assert reason(signer, "q-1", "p1", token, now=T - 3600) == "stale"  # from the future, past the clock skew
    assert signer.verify("q-1", "p1", token, now=T - 60, max_age_s=3600) == T  # within the skew


def test_the_key_is_generated_once_per_home_or_taken_from_the_settings(tmp_path):
    settings = load_settings({"home": str(tmp_path)}, environ={})
    key = signing_key(settings)
    assert len(key) >= 32 and signing_key(settings) == key
    assert (tmp_path / "event-signing.key").stat().st_mode & 0o777 == 0o600
    assert signing_key(settings.replace(event_signing_key="s" * 32)) == b"s" * 32
    with pytest.raises(ValueError, match="at least 32"):
        HitSigner(b"short")

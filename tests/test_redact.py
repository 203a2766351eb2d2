"""The redaction rule for URLs in logs and answers."""

from __future__ import annotations

import pytest

from scheduler_api.redact import redact_text, redact_url


@pytest.mark.parametrize("url, shown", [
    ("https://api.jolpi.ca/ergast/f1/{season}.json", "https://api.jolpi.ca/ergast/f1/{season}.json"),
    ("https://user:hunter2@store.example/seasons/{season}/rounds", "https://store.example/seasons/{season}/rounds"),
    ("https://user@store.example/x", "https://store.example/x"),
    ("https://store.example/x?api_key=s3cret&season={season}", "https://store.example/x?api_key=***&season={season}"),
    ("https://store.example/x?TOKEN=a&Api-Key=b&apikey=c&password=d&secret=e&auth=f&key=g",
     "https://store.example/x?TOKEN=***&Api-Key=***&apikey=***&password=***&secret=***&auth=***&key=***"),
    ("https://store.example/x?keyboard=1&monkey=2", "https://store.example/x?keyboard=1&monkey=2"),
    ("http://127.0.0.1:8082", "http://127.0.0.1:8082"),
    ("http://[::1]:8082/x?token=", "http://[::1]:8082/x?token="),
    ("https://a:b@[::1]:8/x?api%5Fkey=zz", "https://[::1]:8/x?api%5Fkey=***"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_reason():
    reason = "https://u:pw@store.example/2026?token=abc: HTTP 500 (see http://x.example/?key=k)"
    assert redact_text(reason) == "https://store.example/2026?token=***: HTTP 500 (see http://x.example/?key=***)"
    assert "pw" not in redact_text(reason) and "abc" not in redact_text(reason)

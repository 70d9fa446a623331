"""Hostile input gets a clean JSON 4xx: deep JSON, invalid UTF-8, NUL bytes, overlong URLs and headers (also through
gunicorn)."""

from __future__ import annotations

import pytest
import requests

from shopsearch.api.request_guards import MAX_URL_BYTES

from .test_served import serve


def _error(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.is_json
    return resp.get_json()["error"]


def test_deeply_nested_json_is_400_not_500(client):
    for body in ("[" * 200_000, "{\"a\":" * 50_000):
        err = _error(client.post("/events", data=body, content_type="application/json"), 400)
        assert err["code"] == "invalid_json"


def test_invalid_utf8_json_body_is_400(client):
    err = _error(client.post("/events", data=b'{"type": "purchase", "product_id": "\xff\xfe"}',
                             content_type="application/json"), 400)
    assert err["code"] == "invalid_json"


@pytest.mark.parametrize("query", ["q=lamp%00", "q=%FF%FE", "q=a%01b", "%00=1"])
def test_nul_control_and_non_utf8_parameters_are_400(client, query):
    err = _error(client.get("/search", query_string=query), 400)
    assert err["code"] == "invalid_parameter" and ("control characters" in err["message"] or "UTF-8" in err["message"])


def test_overlong_url_is_json_414(client):
    err = _error(client.get("/search?q=" + "a" * MAX_URL_BYTES), 414)
    assert err["code"] == "uri_too_long"
    assert client.get("/search?q=lamp").status_code == 200


def test_served_overlong_url_is_json_not_gunicorn_html(tiny_bi_encoder_dir, tmp_path):
    # no index behind it: the guard answers before any engine call (the worker only warns at boot)
    with serve(None, "missing", tiny_bi_encoder_dir, tmp_path, engine="embedded") as served:
        resp = requests.get(f"{served.url}/search", params={"q": "a" * 6000}, timeout=10)
        assert resp.status_code == 414 and resp.json()["error"]["code"] == "uri_too_long"
        # past gunicorn's longest request line (8190 bytes), and headers over its limits: still JSON
        resp = requests.get(f"{served.url}/search", params={"q": "a" * 20_000}, timeout=10)
        assert resp.status_code == 414 and resp.headers["Content-Type"] == "application/json"
        assert resp.json()["error"]["code"] == "uri_too_long" and "8190 bytes" in resp.json()["error"]["message"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Cache-Control"] == "no-store"
        for headers in ({"X-Big": "b" * 9000}, {f"X-H{i}": "1" for i in range(120)}):
            resp = requests.get(f"{served.url}/healthz", headers=headers, timeout=10)
            assert resp.status_code == 431 and resp.json()["error"]["code"] == "request_header_fields_too_large"
        resp = requests.get(f"{served.url}/search", params={"q": "lamp\x00"}, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"]["parameter"] == "q"
        resp = requests.post(f"{served.url}/events", data="[" * 200_000,
                             headers={"Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"


def test_every_answer_carries_the_browser_safety_headers_and_api_answers_are_not_stored(client):
    for url in ("/healthz", "/search?q=lamp", "/recommendations", "/", "/no-such-route", "/search?size=0"):
        resp = client.get(url)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", url
        assert resp.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in \
            resp.headers["Content-Security-Policy"], url
        assert resp.headers["Referrer-Policy"] == "same-origin", url
        assert resp.headers["Cache-Control"] == "no-store", url
    with client.get("/static/common.js") as resp:  # static files keep their own caching
        assert resp.status_code == 200 and resp.headers.get("Cache-Control") != "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"

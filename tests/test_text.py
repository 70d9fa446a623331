"""The one HTML stripper and query normaliser (shopsearch.text), on tiny hand-made inputs."""

from __future__ import annotations

import pytest

from shopsearch.text import collapse_whitespace, normalise_query, strip_html


@pytest.mark.parametrize("raw, stripped", [
    ("<b>Red</b> lamp", " Red  lamp"),
    ("Red&amp;Black &lt;b&gt;", "Red&Black <b>"),  # entities decoded after tags go, so decoded text stays text
    ("a<!-- x > y -->b", "a b"),  # a ">" inside a comment does not end it
    ("a<script>if (x > 1) {}</script>b<STYLE>p {}</STYLE>c", "a b c"),
    ("plain 3 < 4 text", "plain 3 < 4 text"),  # no closing ">": not a tag
    ("<p>one</p><p>two</p>", " one  two "),  # a space where each tag was, so words never glue
])
def test_strip_html(raw, stripped):
    assert strip_html(raw) == stripped


def test_collapse_whitespace_handles_unicode_spaces():
    assert collapse_whitespace(" a\u00a0\t b\n\u2003c  ") == "a b c"
    assert collapse_whitespace("   ") == ""


@pytest.mark.parametrize("query, key", [
    ("  Cordless\tDRILL  ", "cordless drill"),
    ("ＬＡＭＰ", "lamp"),  # full-width letters (NFKC)
    ("Straße", "strasse"),  # casefold, not lower
    ("\u2460 inch", "1 inch"),  # compatibility digit
    ("", ""),
])
def test_normalise_query(query, key):
    assert normalise_query(query) == key

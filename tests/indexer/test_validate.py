"""Validation: every rule turns a bad row into the right reason code; good rows are normalised."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from shopsearch.indexer.fields import FieldLimits, FieldMapping
from shopsearch.indexer.records import MAX_CATEGORY_PATH_CHARS, PATH_SEPARATOR
from shopsearch.indexer.validate import (RowError, Validator, clean_text, parse_bool, parse_price, reason_code,
                                         to_product)


def test_good_row_is_normalised():
    row = {"id": 42, "title": "  Red &amp; Black\n<b>Pillow</b> ", "description": "<p>Soft&nbsp;satin</p>",
           "brand": "Acme", "category": "Home > Decor > Pillows", "price": "$1,299.50", "rating": "4.5",
           "review_count": "12", "popularity": 3, "in_stock": "In Stock", "color": "red", "size": ""}
    p = to_product(row, FieldMapping())
    assert p.id == "42" and p.title == "Red & Black Pillow" and p.description == "Soft\xa0satin".replace("\xa0", " ")
    assert p.category == ("Home", "Decor", "Pillows") and p.brand == "Acme"
    assert (p.price, p.rating, p.review_count, p.popularity, p.in_stock) == (1299.5, 4.5, 12, 3.0, True)
    assert p.attributes == {"color": "red"}  # empty values are dropped


def test_category_list_and_float_id():
    p = to_product({"id": 7.0, "title": "t", "category": ["A", " ", "B"]}, FieldMapping())
    assert p.id == "7" and p.category == ("A", "B")


@pytest.mark.parametrize("row, code", [
    ({"title": "t"}, "missing_id"),
    ({"id": "  ", "title": "t"}, "missing_id"),
    ({"id": "1"}, "missing_title"),
    ({"id": "1", "title": "<br/> "}, "missing_title"),
    ({"id": "1", "title": "t", "price": "abc"}, "bad_price"),
    ({"id": "1", "title": "t", "price": -2}, "bad_price"),
    ({"id": "1", "title": "t", "price": "nan"}, "bad_price"),
    ({"id": "1", "title": "t", "rating": "five"}, "bad_rating"),
    ({"id": "1", "title": "t", "rating": 7}, "bad_rating"),
    ({"id": "1", "title": "t", "review_count": 2.5}, "bad_number"),
    ({"id": "1", "title": "t", "in_stock": "maybe"}, "bad_in_stock"),
    ({"id": "1", "title": b"Caf\xe9"}, "undecodable"),
    ({"id": "1", "title": "x" * 1001}, "oversize_title"),
    ({"id": "s" * 101, "title": "t"}, "oversize_id"),  # an id no event could name (UBI's limit)
    ({"id": "1", "title": "t", "description": "y" * 50_001}, "oversize_description"),
    ({"id": "1", "title": "t", "category": ["c"] * 11}, "oversize_category"),
    ({"id": "1", "title": "t", "category": ["c" * 133] * 3}, "oversize_category"),  # 405 chars with " > "
    ({"id": "1", "title": ["a", "list"]}, "bad_text"),
])
def test_bad_rows_give_the_right_reason(row, code):
    with pytest.raises(RowError) as info:
        to_product(row, FieldMapping())
    assert info.value.code == code and reason_code(info.value.reason) == code


def test_the_longest_category_path_kept_is_the_longest_a_storefront_can_filter_on():
    """The category facet offers every path a product has; the API refuses a category_path over
    MAX_CATEGORY_PATH_CHARS, so a longer path is quarantined here rather than shown and then refused."""
    levels = ["a" * 131, "b" * 131, "c" * 132]  # 400 characters with the two separators
    assert len(PATH_SEPARATOR.join(levels)) == MAX_CATEGORY_PATH_CHARS
    assert to_product({"id": "1", "title": "t", "category": levels}, FieldMapping()).category == tuple(levels)
    with pytest.raises(RowError, match=r"oversize_category: a path of 401 chars > limit 400"):
        to_product({"id": "1", "title": "t", "category": levels[:2] + ["c" * 133]}, FieldMapping())


def test_a_category_level_holding_the_path_separator_is_written_with_a_look_alike():
    """A level with ">" in it could never be drilled into (the facet reads a path's levels at ">")."""
    def category(value, separator=" > "):
        mapping = FieldMapping(category_separator=separator)
        return to_product({"id": "1", "title": "t", "category": value}, mapping).category

    assert category(["TVs", "Screens >= 55 in"]) == ("TVs", "Screens ›= 55 in")
    assert category("Home/Size&gt;10", "/") == ("Home", "Size›10")
    assert category("Cables -> USB", "->") == ("Cables", "USB")
    assert category("Home > Lamps") == ("Home", "Lamps")


def test_a_category_path_is_measured_as_opensearch_counts_it():
    """OpenSearch counts UTF-16 units, two an emoji: 198 of them and a separator are 399 units, 199 are 401."""
    kept = ["💡" * 100, "💡" * 98]
    assert to_product({"id": "1", "title": "t", "category": kept}, FieldMapping()).category == tuple(kept)
    with pytest.raises(RowError, match=r"oversize_category: a path of 401 chars > limit 400"):
        to_product({"id": "1", "title": "t", "category": ["💡" * 100, "💡" * 99]}, FieldMapping())


def test_limits_are_configurable():
    mapping = FieldMapping(limits=FieldLimits(title_chars=5))
    with pytest.raises(RowError, match=r"oversize_title: 6 chars > limit 5"):
        to_product({"id": "1", "title": "abcdef"}, mapping)


def test_duplicate_ids_first_valid_row_wins():
    v = Validator()
    assert v.check({"id": "1"}, 1).reason.startswith("missing_title")  # invalid: does not claim the id
    first = v.check({"id": "1", "title": "first"}, 2)
    dup = v.check({"id": "1", "title": "second"}, 3)
    assert first.product.title == "first"
    assert dup.product is None and dup.reason == "duplicate_id: '1' first seen at line 2" and dup.id == "1"


def test_helpers():
    assert clean_text("a&lt;b  \t c", "t") == "a<b c"
    assert clean_text("Cafe\u0301", "brand") == "Caf\u00e9"  # one facet value, however the accent was typed
    assert parse_price("") is None and parse_price(0) == 0.0


@pytest.mark.parametrize("text, price", [("$1,299.00", 1299.0), ("1,299", 1299.0), ("12,50", 12.5), ("€12,50", 12.5),
                                         ("1.299,00 €", 1299.0), ("1 299,90", 1299.9), ("1.299.000", 1299000.0),
                                         ("0.5", 0.5), (Decimal("19.99"), 19.99), (np.float32(2.5), 2.5)])
def test_prices_are_read_as_catalogs_write_them(text, price):
    assert parse_price(text) == pytest.approx(price)


@pytest.mark.parametrize("text", ["1,2,3", "12.5.6", "1,299,00", "ten", "--1"])
def test_a_price_that_reads_two_ways_or_none_is_bad(text):
    with pytest.raises(RowError, match="bad_price"):
        parse_price(text)
    assert parse_bool("no") is False and parse_bool(1) is True and parse_bool(None) is None


def test_a_rating_on_another_scale_is_stored_out_of_5():
    """rating_min, the rating facet and the storefront's stars are out of 5: a catalog rating out of 10 must not be
    unfilterable above 5."""
    mapping = FieldMapping(limits=FieldLimits(rating_max=10))
    assert to_product({"id": "1", "title": "t", "rating": "9.2"}, mapping).rating == 4.6
    assert to_product({"id": "2", "title": "t", "rating": 7.3}, mapping).rating == 3.65
    with pytest.raises(RowError, match=r"rating 10.5 outside 0..10"):
        to_product({"id": "3", "title": "t", "rating": 10.5}, mapping)

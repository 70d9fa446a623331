"""The speller and its vocabulary (pure): what is corrected, what is protected, did-you-mean, the stored form."""

from __future__ import annotations

import random
import threading
import time

import pytest

from shopsearch.plugin.hybrid import lexical_text
from shopsearch.plugin.speller import Speller, SpellerCache
from shopsearch.plugin.vocabulary import Vocabulary, build_vocabulary

VOCAB = Vocabulary("v1", {"mattress": 40, "queen": 90, "cable": 200, "candle": 60, "holders": 30, "fryer": 12,
                          "coffee": 300, "coffe": 1, "ninja": 80, "nina": 3, "turtle": 20, "lamp": 50,
                          "for": 900, "fork": 1, "and": 950, "land": 2, "lamb": 1, "xbox": 7, "controller": 9},
                   {"candle holders": 12, "ninja turtle": 6})


@pytest.fixture(scope="module")
def speller() -> Speller:
    return Speller(VOCAB)


@pytest.mark.parametrize("query, corrected", [
    ("Queen matress", "Queen mattress"),  # one edit, the rest as typed
    ("canle holders", "candle holders"),  # context beats frequency (cable is commoner)
    ("coffe mug", "coffee mug"),  # a catalog word far rarer than its neighbour (a typo in a description)
    ("nina turtle", "ninja turtle"),  # a rare catalog word that never sits beside its query neighbour
    ("queen mattress", "queen mattress"),  # clean: untouched
    ("deep fryers", "deep fryers"),  # an inflection of a catalog word is not a typo
    ("lamp 60x80 4k", "lamp 60x80 4k"),  # codes and sizes never change
    ("lmp", "lmp"),  # short words are left alone
    ("silver fork", "silver fork"),  # a rare catalog word is never "corrected" into a stopword
    ("SX-70 Land camera", "SX-70 Land camera"),
])
def test_corrections(speller, query, corrected):
    assert speller.correct(query).corrected == corrected
    assert speller.correct(query).changed == (query != corrected)


def test_did_you_mean_and_known_words(speller):
    assert speller.did_you_mean("zzzzqqq xylophone") == []
    assert speller.did_you_mean("zzzzqqq matrss") == ["mattress"]  # two edits, unknown words dropped
    assert speller.did_you_mean("xbox 360 contoller") == ["xbox 360 controller"]  # numbers and short words kept
    assert speller.did_you_mean("zzzzqqq 360") == []  # but not alone
    assert speller.known_words("zzzzqqq queen 2m") == "queen 2m"


def test_a_rare_catalog_word_keeps_its_rules_however_it_is_capitalised_and_synonyms_are_known():
    speller = Speller(Vocabulary("v", {"lamp": 300, "lamb": 2, "wool": 40}))
    for typed in ("lamb", "Lamb", "LAMB"):
        correction = speller.correct(f"{typed} wool")
        assert correction.corrected.lower() == "lamp wool" and not speller.replaces(correction)
    assert speller.replaces(speller.correct("Lanp"))  # a typo is replaced, whatever its case
    assert speller.correct("wooll lanp", keep={"wooll"}).changes == (("lanp", "lamp"),)  # a synonym's word stays


def test_vocabulary_round_trip_and_protection():
    v = build_vocabulary("x", [{"title": "Red Lamp 60W", "brand": "Lumo", "description": "<b>red</b> lamp"},
                               {"title": "red lamp", "description": "X124 tv"}])
    assert v.words == {"lamp": 2, "lumo": 1, "red": 2} and v.pairs == {"red lamp": 2}
    assert Vocabulary.from_json(v.to_json()) == v and Vocabulary.from_json(v.to_json()).words == v.words
    assert Vocabulary.from_json('{"format": 99}') is None


def test_speller_cache_rebuilds_only_on_a_new_version():
    versions = iter([VOCAB, VOCAB, Vocabulary("v2", {"sofa": 3})])
    cache = SpellerCache(lambda: next(versions), refresh_s=3600)
    first = cache.get()
    assert cache.get() is first  # not due for a check
    cache.refresh()  # v1 again: kept
    assert cache.get() is first
    cache.refresh()  # v2
    assert cache.get() is not first and cache.get().version == "v2"


def test_speller_cache_refreshes_in_the_background_and_keeps_serving_meanwhile():
    building = threading.Event()
    loads = []

    def load():
        loads.append(1)
        if len(loads) == 1:
            return VOCAB
        building.wait(5)  # the new vocabulary takes a while: searches must not wait for it
        return Vocabulary("v2", {"sofa": 3})

    cache = SpellerCache(load, refresh_s=0)
    first = cache.get()
    assert cache.get() is first  # starts the refresh, answers with the current speller at once
    building.set()
    deadline = time.monotonic() + 5
    while cache.get().version != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get().version == "v2"


def test_bad_options_name_the_parameter():
    with pytest.raises(ValueError, match="min_chars"):
        Speller(VOCAB, min_chars=2)
    with pytest.raises(ValueError, match="rare_ratio"):
        Speller(VOCAB, rare_ratio=0.5)


def test_lexical_text_modes(speller):
    c = speller.correct("canle holders")
    assert lexical_text(c, "both") == "canle holders candle" and lexical_text(c, "original") == "canle holders"


def test_typo_generator_is_seeded_and_makes_one_typo():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("typos", Path(__file__).parents[2] / "bench" / "typos.py")
    typos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(typos)
    rows = [("q1", "queen mattress"), ("q2", "tv"), ("q3", "candle holders")]
    once, again = typos.typo_queries(rows), typos.typo_queries(rows)
    assert once == again and once[1] == ("q2", "tv")  # seeded; nothing of five letters: unchanged
    for (_, clean), (_, typo) in zip(rows, once):
        if clean != "tv":
            assert typo != clean and abs(len(typo) - len(clean)) <= 1
    assert typos.make_typo("lamp", random.Random(0)) == "lamp"

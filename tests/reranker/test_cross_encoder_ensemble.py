"""Cross-encoder ensembles: trained with `--members`, loaded by name, scored as the mean of their members."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.api.cli import main
from shopsearch.reranker import ce_training
from shopsearch.reranker.calibration import load_calibrations
from shopsearch.reranker.cross_encoder import CrossEncoderReranker
from shopsearch.reranker.cross_encoder_ensemble import CrossEncoderEnsemble, read_members, write_ensemble
from shopsearch.reranker.model_card import read_model_card
from shopsearch.reranker.model_registry import ModelRegistry, load_cross_encoder
from tests.reranker.test_cross_encoder import _cli_train, _hits
from tests.reranker.tiny_ce import build_tiny_cross_encoder, write_tiny_judged_set

PRODUCTS = [{"title": "Red lamp", "description": "A red lamp."}, {"title": "Blue chair"}, {"title": "Green shoe"}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    build_tiny_cross_encoder(root / "ens" / "a", seed=1)
    build_tiny_cross_encoder(root / "ens" / "b", seed=2)
    write_ensemble(root / "ens", ["a", "b"])
    return root / "ens"


def test_the_ensemble_scores_the_mean_of_its_members(pair):
    kw = {"device": "cpu", "max_length": 32, "fast_cpu": False}
    ens = CrossEncoderEnsemble(pair, **kw)
    a, b = (CrossEncoderReranker(pair / m, **kw).score("red lamp", PRODUCTS) for m in ("a", "b"))
    assert not np.allclose(a, b)  # two different members, or the test shows nothing
    np.testing.assert_allclose(ens.score("red lamp", PRODUCTS), (a + b) / 2, rtol=1e-6)
    ranked, why = ens.rerank("red lamp", _hits(6), depth=4, combine="rrf")
    assert why is None and [h.rank for h in ranked] == list(range(1, 7))
    assert ens.cost.batch_ms(4) is not None  # the members' cost together drives the stage's budget check


def test_a_profile_names_an_ensemble_like_any_cross_encoder(pair):
    assert isinstance(ModelRegistry([pair.parent]).cross_encoder("ens"), CrossEncoderEnsemble)
    assert isinstance(load_cross_encoder(str(pair)), CrossEncoderEnsemble)


@pytest.mark.parametrize("members, message", [
    (["a"], "at least 2"), (["a", "a"], "each member once"), (["../a", "b"], "names of folders"),
    (["/abs", "b"], "names of folders"), (["C:x", "b"], "names of folders"), ([".", "b"], "names of folders"),
    (["a/", "b"], "names of folders")])
def test_a_bad_members_list_is_refused_naming_the_file(tmp_path, members, message):
    with pytest.raises(ValueError, match=message):
        write_ensemble(tmp_path, members)
    (tmp_path / "ensemble.toml").write_text(f"members = {members!r}\n".replace("'", '"'))
    with pytest.raises(ValueError, match=rf"ensemble.toml: members.*{message}"):
        read_members(tmp_path)


@pytest.mark.parametrize("estimates_ms, first_takes_s, why, scored", [
    ((10, 10), 0.0, None, [0, 1]),       # both fit: both score
    ((10, 200), 0.0, "budget", []),      # together they cannot fit: the stage is skipped before any scoring
    ((10, 40), 0.08, "budget", [0])])    # the first ran long: the second is not started past the time left
def test_the_members_share_the_stage_budget(pair, monkeypatch, estimates_ms, first_takes_s, why, scored):
    import time

    from shopsearch.reranker.batch_cost import BatchCost

    ens = CrossEncoderEnsemble(pair, device="cpu", max_length=32, fast_cpu=False)
    calls = []
    for i, (member, ms) in enumerate(zip(ens.members, estimates_ms)):
        member.cost = BatchCost(alpha=1.0)
        member.cost.observe(pairs=4, ms=ms)

        def score(query, products, *, deadline=None, i=i):
            calls.append(i)
            time.sleep(first_takes_s if i == 0 else 0)
            return np.full(len(products), 0.5, np.float32)

        monkeypatch.setattr(member, "score", score)
    ranked, reason = ens.rerank("red lamp", _hits(6), depth=4, budget_ms=100)
    assert (reason, calls) == (why, scored) and len(ranked) == 6


def test_training_never_replaces_a_folder_that_is_not_a_cross_encoders(pair, tmp_path):
    """Training swaps --out in whole: a models/ or data folder given as --out is refused before anything runs."""
    from shopsearch.reranker.cross_encoder_ensemble import check_out_folder

    check_out_folder(pair)  # an ensemble: replaced by the new model, whatever its kind
    check_out_folder(pair / "a")  # one model
    check_out_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_out_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds other files than a cross-encoder"):
        check_out_folder(tmp_path)  # a folder of models (and of this test's files)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_out_folder(tmp_path / "file")


def test_a_member_that_is_not_a_model_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    build_tiny_cross_encoder(tmp_path / "b")
    write_ensemble(tmp_path, ["a", "b"])
    with pytest.raises(FileNotFoundError, match="member a is not a trained cross-encoder"):
        CrossEncoderEnsemble(tmp_path)


def test_cli_trains_members_on_one_split_in_their_own_orders(tmp_path, monkeypatch):
    prepared = []
    real = ce_training.prepare_splits
    monkeypatch.setattr(ce_training, "prepare_splits", lambda *a, **kw: prepared.append(1) or real(*a, **kw))
    data = write_tiny_judged_set(tmp_path / "data")
    assert _cli_train(tmp_path, data, tmp_path / "ce", "--members", "2", "--folds", "3", "--fold", "1") == 0
    card = read_model_card(tmp_path / "ce")
    assert [m["folder"] for m in card["members"]] == ["m0", "m1"]
    assert [m["shuffle_seed"] for m in card["members"]] == [42, 43]
    assert len(prepared) == 1  # the split and its negatives are made once for every member
    member_cards = [read_model_card(tmp_path / "ce" / m) for m in ("m0", "m1")]
    assert member_cards[0]["data"]["pairs_sha256"] == member_cards[1]["data"]["pairs_sha256"]  # the same pairs
    heldout = f"heldout-queries-{data.name}.tsv"
    assert (tmp_path / "ce" / heldout).read_text() == (tmp_path / "ce" / "m1" / heldout).read_text()
    assert read_members(tmp_path / "ce") == [tmp_path / "ce" / "m0", tmp_path / "ce" / "m1"]
    # the ensemble's own figures and calibration, from the members' mean score on their validation queries
    assert data.name in load_calibrations(tmp_path / "ce")[0]
    assert card["metrics"]["valid_ndcg@10_before"] == member_cards[0]["metrics"]["valid_ndcg@10_before"]
    assert "the mean score of 2 members" in (tmp_path / "ce" / "README.md").read_text()
    assert main(["train", "calibration", "--model", str(tmp_path / "ce"), "--data", str(data), "--fp32"]) == 0
    with pytest.raises(ValueError, match="--members 9: must be in 1..8"):
        _cli_train(tmp_path, data, tmp_path / "bad", "--members", "9")
    assert not (tmp_path / "bad").exists()


def test_cli_trains_one_member_from_each_base_model(tmp_path):
    data = write_tiny_judged_set(tmp_path / "data")
    other = build_tiny_cross_encoder(tmp_path / "other", seed=7)
    # _cli_train passes its own tiny base first; a second --base-model makes it an ensemble of the two
    assert _cli_train(tmp_path, data, tmp_path / "ce", "--base-model", str(other), "--folds", "3") == 0
    card = read_model_card(tmp_path / "ce")
    assert [m["base_model"] for m in card["members"]] == [str(tmp_path / "tiny"), str(other)]
    assert [m["shuffle_seed"] for m in card["members"]] == [42, 42]  # they differ in their start, not their order
    assert card["base_model"] == f"{tmp_path / 'tiny'}, {other}"
    assert [read_model_card(tmp_path / "ce" / m)["base_model"] for m in ("m0", "m1")] == [str(tmp_path / "tiny"),
                                                                                        str(other)]
    ens = CrossEncoderEnsemble(tmp_path / "ce")
    assert len(ens.score("red lamp", PRODUCTS)) == len(PRODUCTS)
    with pytest.raises(ValueError, match="--members 3 with 2 --base-model: an ensemble of base models has one "
                                         "member per --base-model"):
        _cli_train(tmp_path, data, tmp_path / "bad", "--base-model", str(other), "--members", "3")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("extra, message", [
    (["--base-model", "no/such/model"], "base model 'no/such/model': not a packaged model .* nor a model folder "
                                        r"\(no such folder; hub downloads are disabled\)"),
    (["--base-model", "{data}"], r"base model '.*data': .* \(no config.json there"),
    (["--base-model", "{tiny}"], "given twice: its members would be one model served twice"),
    (["--base-model", "{tiny}"] * 8, "--base-model given 9 times: an ensemble has at most 8 members"),
])
def test_cli_refuses_bad_base_models_before_training_any_member(tmp_path, monkeypatch, extra, message):
    trained = []
    monkeypatch.setattr(ce_training, "train_cross_encoder", lambda *a, **kw: trained.append(1))
    data = write_tiny_judged_set(tmp_path / "data")
    with pytest.raises(ValueError, match=message):
        _cli_train(tmp_path, data, tmp_path / "bad", *[e.format(tiny=tmp_path / "tiny", data=data) for e in extra])
    assert not trained and not (tmp_path / "bad").exists()

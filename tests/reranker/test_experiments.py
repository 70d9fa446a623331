"""Experiments file validation and arm assignment (reranker/experiments.py): pure, no engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shopsearch.plugin.profiles import ProfileStore
from shopsearch.reranker.experiments import (EXAMPLE_FILE, INTERLEAVED, ExperimentsError, ExperimentsFile,
                                             ExperimentStore, assign, bucket, load_experiments, parse_experiments)

NOW = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)


def _ab(*shares: float, **extra) -> dict:
    arms = [{"profile": f"p{i}", "share": s} for i, s in enumerate(shares)]
    return {"experiments": {"x": {"mode": "ab", "arms": arms, **extra}}}


def _error(data: dict, path: str = "exp.toml") -> str:
    with pytest.raises(ExperimentsError) as info:
        parse_experiments(data, path)
    return str(info.value)


def test_the_example_file_is_valid_against_the_packaged_profiles():
    spec = load_experiments(EXAMPLE_FILE, ProfileStore().names())
    assert [e.mode for e in spec.experiments.values()] == ["ab", "interleave"]
    assert spec.experiments["ce-rerank"].start == datetime(2025, 1, 6, tzinfo=timezone.utc)


@pytest.mark.parametrize("data, expected", [
    (_ab(0.5, 0.5, mode="abc"), "exp.toml: experiments.x.mode = 'abc': must be one of ab, interleave"),
    (_ab(1.5, 0.5), "exp.toml: experiments.x.arms.0.share = 1.5: must be a number > 0 and <= 1"),
    (_ab(0.5, 0.4), "exp.toml: experiments.x.arms.share = [0.5, 0.4]: must give every arm a share, the shares "
                    "summing to 1"),
    (_ab(0.5, 0.5, colour="red"), "exp.toml: experiments.x.colour = 'red': must be one of the keys allowed in "
                                  "[experiments.x]: description, mode, arms, start, end"),
    (_ab(1.0), "exp.toml: experiments.x.arms = [{'profile': 'p0', 'share': 1.0}]: must be a list of at least 2 "
               "items"),
    (_ab(0.5, 0.5, start=datetime(2025, 1, 1)), "exp.toml: experiments.x.start = datetime.datetime(2025, 1, 1, 0, 0):"
                                                " must be an offset date-time such as 2025-06-01T00:00:00Z"),
    (_ab(0.5, 0.5, start=NOW, end=NOW), "exp.toml: experiments.x.end = 2025-03-01T12:00:00+00:00: must be after "
                                        "start"),
    ({"experiments": {"x": {"mode": "interleave", "arms": [{"profile": "a"}, {"profile": "b"},
                                                           {"profile": "c"}]}}},
     "exp.toml: experiments.x.arms = ['a', 'b', 'c']: an interleave experiment must have exactly 2 arms"),
    ({"experiments": {"x": {"mode": "interleave", "arms": [{"profile": "a", "share": 0.5},
                                                           {"profile": "b", "share": 0.5}]}}},
     "exp.toml: experiments.x.arms.share = [0.5, 0.5]: must be left out in an interleave experiment"),
    ({"experiments": {"x": {"mode": "ab", "arms": [{"profile": "a", "share": 0.5}, {"profile": "a", "share": 0.5}]}}},
     "exp.toml: experiments.x.arms = ['a', 'a']: must name each profile once"),
    ({"experiments": {"x": {"mode": "ab", "arms": [{"profile": "a", "share": 0.5},
                                                   {"profile": INTERLEAVED, "share": 0.5}]}}},
     "exp.toml: experiments.x.arms.1.profile = 'interleaved': is reserved (it marks interleaved searches in the "
     "query log); rename that profile"),
    ({"experiments": {"bad name": _ab(0.5, 0.5)["experiments"]["x"]}},
     "exp.toml: experiments.bad name = {"),
    ({"experiment": {}}, "exp.toml: experiment = {}: must be one of the keys allowed at the top level: experiments"),
])
def test_errors_name_file_key_value_and_what_is_allowed(data, expected):
    assert _error(data).startswith(expected)


def test_overlapping_windows_are_refused_and_disjoint_ones_accepted():
    one = _ab(0.5, 0.5, start=NOW, end=NOW + timedelta(days=7))["experiments"]["x"]
    later = {**one, "start": NOW + timedelta(days=7), "end": NOW + timedelta(days=14)}
    assert len(parse_experiments({"experiments": {"a": one, "b": later}}).experiments) == 2
    open_ended = {**one, "start": NOW + timedelta(days=3), "end": None}
    assert "experiments.a and experiments.b: their windows [start, end) overlap" in _error(
        {"experiments": {"a": one, "b": open_ended}})


def test_an_arm_naming_a_missing_profile_is_an_error_listing_those_available():
    data = {"experiments": {"x": {"mode": "interleave", "arms": [{"profile": "default"}, {"profile": "nope"}]}}}
    assert parse_experiments(data).experiments["x"].profiles == ("default", "nope")  # no profile list: not checked
    with pytest.raises(ExperimentsError, match=r"experiments\.x\.arms\.1\.profile = 'nope': must name a profile; "
                                               r"available: bm25, default"):
        parse_experiments(data, "e.toml", profiles=["default", "bm25"])


def test_a_toml_file_error_names_the_file(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[experiments.x]\nmode = "ab"\narms = [{ profile = "a", share = 0.5 }, { profile = "b", '
                    'share = 0.5 }]\nstart = 2025-01-01\n')
    with pytest.raises(ExperimentsError, match=rf"^{path}: experiments\.x\.start = datetime\.date\(2025, 1, 1\): "):
        load_experiments(path)
    path.write_text("[experiments.x\n")
    with pytest.raises(ExperimentsError, match="not valid TOML"):
        load_experiments(path)


def test_bucket_is_sha256_based_and_pinned():
    # Pinned: changing the hash would move every running experiment's clients to other arms.
    assert bucket("exp", "client-1") == 0.5055410377021958
    assert bucket("exp", "client-1") != bucket("other", "client-1")  # experiments hash independently


def test_assignment_is_stable_and_honours_shares_over_10k_clients():
    spec = parse_experiments(_ab(0.2, 0.3, 0.5))
    clients = [f"client-{i}" for i in range(10_000)]
    first = [assign(spec, c, NOW).arm for c in clients]
    assert first == [assign(spec, c, NOW).arm for c in clients]  # stable
    for arm, share in (("p0", 0.2), ("p1", 0.3), ("p2", 0.5)):
        assert abs(first.count(arm) / len(clients) - share) <= 0.02, arm
    a = assign(spec, "client-1", NOW)
    assert (a.experiment, a.mode, a.profiles) == ("x", "ab", (a.arm,))
    assert a.query_attributes() == {"experiment": "x", "arm": a.arm}


def test_no_client_id_means_no_experiment():
    spec = parse_experiments(_ab(0.5, 0.5))
    assert assign(spec, None, NOW) is None and assign(spec, "  ", NOW) is None


def test_only_an_active_experiment_assigns():
    spec = parse_experiments(_ab(0.5, 0.5, start=NOW, end=NOW + timedelta(hours=1)))
    assert assign(spec, "c", NOW - timedelta(seconds=1)) is None
    assert assign(spec, "c", NOW) is not None  # start is inclusive
    assert assign(spec, "c", NOW + timedelta(minutes=59)) is not None
    assert assign(spec, "c", NOW + timedelta(hours=1)) is None  # end is exclusive
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        assign(spec, "c", datetime(2025, 1, 1))


def test_interleave_assigns_both_profiles():
    spec = parse_experiments({"experiments": {"il": {"mode": "interleave", "arms": [{"profile": "default"},
                                                                                     {"profile": "bm25"}]}}})
    a = assign(spec, "c1", NOW)
    assert (a.arm, a.profiles) == (INTERLEAVED, ("default", "bm25"))
    assert a.query_attributes(["default", "bm25"]) == {"experiment": "il", "arm": INTERLEAVED,
                                                       "teams": ["default", "bm25"]}


def test_store_rereads_a_changed_file_and_keeps_the_last_valid_one(tmp_path, caplog):
    path = tmp_path / "e.toml"
    assert ExperimentStore(None).current() == ExperimentsFile()
    assert ExperimentStore(path).current() == ExperimentsFile()  # missing file: no experiments (logged)
    path.write_text('[experiments.x]\nmode = "ab"\narms = [{ profile = "a", share = 1.0 }, { profile = "b", '
                    'share = 0.0 }]\n')
    store = ExperimentStore(path)
    assert store.current().experiments == {}  # invalid from the start: none
    assert "invalid" in caplog.text
    path.write_text('[experiments.x]\nmode = "ab"\narms = [{ profile = "a", share = 0.5 }, { profile = "b", '
                    'share = 0.5 }]\n')
    _touch_later(path)
    assert list(store.current().experiments) == ["x"]
    assert store.assign("c1").experiment == "x"
    path.write_text("[experiments.x\n")
    _touch_later(path)
    assert list(store.current().experiments) == ["x"]  # a broken edit keeps the running experiment
    (tmp_path / "e2.toml").write_text('[experiments.y]\nmode = "interleave"\narms = [{ profile = "a" }, '
                                      '{ profile = "gone" }]\n')
    assert ExperimentStore(tmp_path / "e2.toml", profiles=lambda: ["a"]).current().experiments == {}
    assert "'gone': must name a profile" in caplog.text


def _touch_later(path) -> None:
    """Bump the modification time (coarse file-system clocks would hide a quick rewrite)."""
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

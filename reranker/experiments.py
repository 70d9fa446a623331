"""Online experiments: the experiments file a search engineer edits, and which arm a client is assigned to.

An experiments file (TOML; ``reranker/experiments.example.toml`` is the fully commented example, the
``experiments_file`` setting names the one the API serves) holds named experiments. Each has arms (ranking
profiles), an optional UTC window ``[start, end)`` and a mode:

- ``ab``: each client sees one arm, chosen by a stable hash of (experiment name, client_id) — sha256, so the same
  client gets the same arm in every process, on every host and after a restart — with the arms' traffic shares;
- ``interleave``: every query of an enrolled client runs both profiles and shows one team-draft interleaved list
  (:mod:`.interleaving`); clicks are credited to the profile that contributed the clicked product.

The file is validated by the strict pydantic model :class:`ExperimentsFile` (unknown keys are errors; each error
names the file, the dotted key, the value and what is allowed), which also produces its JSON Schema,
docs/schemas/experiments.schema.json (``shopsearch schema``). At most one experiment may be active at any instant,
so a client is never asked to see two profiles at once. A client without a client_id takes part in nothing.

    >>> spec = parse_experiments({"experiments": {"ce": {"mode": "ab", "arms": [
    ...     {"profile": "default", "share": 0.5}, {"profile": "rerank", "share": 0.5}]}}})
    >>> assign(spec, "client-42", datetime(2025, 1, 1, tzinfo=timezone.utc)).arm in ("default", "rerank")
    True
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Mapping, NamedTuple

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from shopsearch.config_files import FILE_MODEL, file_schema, must, read_toml, validate_file

log = logging.getLogger(__name__)

EXAMPLE_FILE = Path(__file__).parent / "experiments.example.toml"
MODES = ("ab", "interleave")
INTERLEAVED = "interleaved"  # the arm logged for a client in an interleaving experiment
SHARE_TOLERANCE = 1e-6  # shares written as decimals (0.1 + 0.2 ...) need not add to exactly 1.0
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # experiment and profile names (profiles: as plugin/profiles.py)
Name = Annotated[str, Field(pattern=_NAME)]


def _utc_time(value: Any) -> Any:
    """A TOML offset date-time; a local one (no offset) is ambiguous across servers, a bare date too coarse."""
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise must("be an offset date-time such as 2025-06-01T00:00:00Z (a date or local time is ambiguous)")
    return value


UtcTime = Annotated[datetime | None, BeforeValidator(_utc_time)]


class ExperimentsError(ValueError):
    """An experiments file is malformed; the message names the file, the key, the value and what is allowed."""


class Arm(BaseModel):
    """One arm: a ranking profile and, in an ``ab`` experiment, the share of clients that see it."""

    model_config = FILE_MODEL
    profile: Name = Field(description="Ranking profile name (plugin/profiles/*.toml or the profiles_dir setting)")
    share: float | None = Field(None, gt=0, le=1, description="ab: share of the enrolled clients (the arms' shares "
                                                              "sum to 1); interleave: leave out")


class Experiment(BaseModel):
    """One experiment: its mode, arms and optional UTC window (start inclusive, end exclusive)."""

    model_config = FILE_MODEL
    description: str = Field("", description="Free text: the hypothesis, the owner")
    mode: Literal[MODES] = Field(description="ab: each client sees one arm; interleave: team-draft interleaving "
                                             "of exactly two profiles in every list")
    arms: list[Arm] = Field(min_length=2, description="The profiles compared; the first is the baseline")
    start: UtcTime = Field(None, description="First instant it assigns (TOML offset date-time, e.g. "
                                             "2025-06-01T00:00:00Z); none: from now on")
    end: UtcTime = Field(None, description="First instant it no longer assigns; none: until removed")

    def active(self, now: datetime) -> bool:
        """Whether ``now`` (an aware datetime) lies in ``[start, end)``."""
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    @property
    def profiles(self) -> tuple[str, ...]:
        """The arms' profiles, baseline first."""
        return tuple(arm.profile for arm in self.arms)


class ExperimentsFile(BaseModel):
    """What an experiments file holds: ``[experiments.NAME]`` tables."""

    model_config = FILE_MODEL
    experiments: dict[Name, Experiment] = Field(default_factory=dict, description="Experiments by name")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentsFile:
        for name, exp in self.experiments.items():
            _check_arms(f"experiments.{name}", exp)
        _check_no_overlap(self.experiments)
        return self


def _check_arms(key: str, exp: Experiment) -> None:
    """The rules across an experiment's keys (raised as ValueErrors: one line naming the key and value)."""
    if exp.start is not None and exp.end is not None and exp.end <= exp.start:
        raise ValueError(f"{key}.end = {exp.end.isoformat()}: must be after start ({exp.start.isoformat()})")
    if len(set(exp.profiles)) != len(exp.profiles):
        raise ValueError(f"{key}.arms = {list(exp.profiles)}: must name each profile once")
    if INTERLEAVED in exp.profiles:  # the query log's arm of interleaved searches: the report would misread it
        raise ValueError(f"{key}.arms.{exp.profiles.index(INTERLEAVED)}.profile = {INTERLEAVED!r}: is reserved "
                         f"(it marks interleaved searches in the query log); rename that profile")
    shares = [arm.share for arm in exp.arms]
    if exp.mode == "interleave":
        if len(exp.arms) != 2:
            raise ValueError(f"{key}.arms = {list(exp.profiles)}: an interleave experiment must have exactly 2 arms")
        if any(s is not None for s in shares):
            raise ValueError(f"{key}.arms.share = {shares}: must be left out in an interleave experiment (both "
                             f"profiles serve every query)")
    elif any(s is None for s in shares) or not math.isclose(sum(shares), 1.0, abs_tol=SHARE_TOLERANCE):
        raise ValueError(f"{key}.arms.share = {shares}: must give every arm a share, the shares summing to 1")


def _check_no_overlap(experiments: Mapping[str, Experiment]) -> None:
    """At most one experiment active at any instant (windows [start, end) must not intersect)."""
    lo = datetime.min.replace(tzinfo=timezone.utc)
    hi = datetime.max.replace(tzinfo=timezone.utc)
    items = list(experiments.items())
    for i, (a, ea) in enumerate(items):
        for b, eb in items[i + 1:]:
            if max(ea.start or lo, eb.start or lo) < min(ea.end or hi, eb.end or hi):
                raise ValueError(f"experiments.{a} and experiments.{b}: their windows [start, end) overlap; must not "
                                 f"(a client sees one experiment at a time)")


class Assignment(NamedTuple):
    """A client's place in an experiment: what to serve and what to log with the query."""

    experiment: str
    mode: str  # "ab" or "interleave"
    arm: str  # ab: the arm's profile; interleave: INTERLEAVED
    profiles: tuple[str, ...]  # profiles to run: (arm,) for ab, (baseline, candidate) for interleave

    def query_attributes(self, teams: Iterable[str] | None = None) -> dict[str, Any]:
        """The UBI query_attributes this assignment adds (``experiment``, ``arm``; ``teams`` when interleaved).

        >>> Assignment("x", "ab", "rerank", ("rerank",)).query_attributes()
        {'experiment': 'x', 'arm': 'rerank'}
        """
        out: dict[str, Any] = {"experiment": self.experiment, "arm": self.arm}
        if teams is not None:
            out["teams"] = list(teams)
        return out


def bucket(experiment: str, client_id: str) -> float:
    """The client's stable point in [0, 1) for ``experiment``: sha256 of the two, first 8 bytes.

    Python's ``hash()`` is salted per process, so it would move clients between arms on every restart.

    >>> bucket("x", "c1") == bucket("x", "c1") and 0 <= bucket("x", "c1") < 1
    True
    """
    digest = hashlib.sha256(f"{experiment}\x00{client_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign(spec: ExperimentsFile, client_id: str | None, now: datetime) -> Assignment | None:
    """The experiment and arm of ``client_id`` at ``now``.

    Args:
        spec: the experiments (validated: at most one active at a time).
        client_id: the client (UBI client_id); None or blank: no experiment.
        now: the current time, an aware datetime.

    Returns:
        The Assignment, or None when the client has no id or no experiment is active.

    Raises:
        ValueError: ``now`` is a naive datetime.

    >>> assign(ExperimentsFile(), "c1", datetime(2025, 1, 1, tzinfo=timezone.utc)) is None
    True
    """
    if now.tzinfo is None:
        raise ValueError(f"now must be an aware datetime (UTC); got {now!r}")
    if not client_id or not client_id.strip():
        return None
    for name, exp in spec.experiments.items():
        if not exp.active(now):
            continue
        if exp.mode == "interleave":
            return Assignment(name, exp.mode, INTERLEAVED, exp.profiles)
        point, edge = bucket(name, client_id), 0.0
        for arm in exp.arms:
            edge += arm.share or 0.0
            if point < edge:
                return Assignment(name, exp.mode, arm.profile, (arm.profile,))
        last = exp.arms[-1].profile  # shares summing to 1 - 1e-7: the sliver left over goes to the last arm
        return Assignment(name, exp.mode, last, (last,))
    return None


def experiments_schema() -> dict[str, Any]:
    """The JSON Schema of experiments files (docs/schemas/experiments.schema.json).

    >>> sorted(experiments_schema()["$defs"]["Experiment"]["properties"])
    ['arms', 'description', 'end', 'mode', 'start']
    """
    return file_schema(ExperimentsFile, title="shopsearch online experiments", source="reranker/experiments.py")


def parse_experiments(data: Mapping[str, Any], path: str | Path = "<experiments>",
                      profiles: Iterable[str] | None = None) -> ExperimentsFile:
    """Validate an experiments file's parsed TOML.

    Args:
        data: the TOML document as a dict.
        path: where it came from, for error messages.
        profiles: the profile names that exist; when given, an arm naming another is an error.

    Returns:
        The validated ExperimentsFile.

    Raises:
        ExperimentsError: one line per bad key (``FILE: experiments.x.arms.0.share = 2: must ...``).

    >>> try:
    ...     parse_experiments({"experiments": {"x": {"mode": "ab", "arms": [{"profile": "a", "share": 1.0},
    ...                       {"profile": "b", "share": 0.5}]}}}, "e.toml")
    ... except ExperimentsError as exc:
    ...     print(exc)
    e.toml: experiments.x.arms.share = [1.0, 0.5]: must give every arm a share, the shares summing to 1
    """
    spec = validate_file(ExperimentsFile, data, path, ExperimentsError)
    if profiles is not None:
        known = set(profiles)
        for name, exp in spec.experiments.items():
            for i, profile in enumerate(exp.profiles):
                if profile not in known:
                    raise ExperimentsError(f"{path}: experiments.{name}.arms.{i}.profile = {profile!r}: must name a "
                                           f"profile; available: {', '.join(sorted(known))}")
    return spec


def load_experiments(path: str | Path, profiles: Iterable[str] | None = None) -> ExperimentsFile:
    """Read and validate an experiments file (see :func:`parse_experiments`).

    Raises:
        FileNotFoundError: no such file.
        ExperimentsError: invalid TOML or an invalid key.

    >>> sorted(load_experiments(EXAMPLE_FILE).experiments)
    ['ce-rerank', 'ranker-interleave']
    """
    return parse_experiments(read_toml(path, ExperimentsError), path, profiles)


class ExperimentStore:
    """The experiments file a server assigns from, re-read when it changes (edit it on a running server).

    A file that turns invalid keeps the last valid version in force (logged); one that is invalid from the start
    runs no experiment (logged), so a typo never turns shoppers' searches into errors. ``shopsearch experiment
    check`` validates a file before it is deployed.

    Args:
        path: the file; None: no experiments.
        profiles: returns the profile names that exist (checked on every re-read).
    """

    def __init__(self, path: str | Path | None, profiles: Callable[[], Iterable[str]] | None = None):
        self.path = Path(path) if path else None
        self._profiles = profiles
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._spec = ExperimentsFile()
        self._said: set[str] = set()  # errors logged for the file's current version

    def current(self) -> ExperimentsFile:
        """The experiments in force."""
        if self.path is None:
            return self._spec
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            if self._mtime != -1.0:
                log.error("experiments file %s unreadable (%s): no experiment runs", self.path, exc)
            self._mtime, self._spec = -1.0, ExperimentsFile()
            return self._spec
        with self._lock:
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self._spec = load_experiments(self.path, self._profiles() if self._profiles else None)
                    self._said.clear()
                    log.info("experiments file %s: %s", self.path, ", ".join(self._spec.experiments) or "none")
                except (ValueError, OSError) as exc:  # ExperimentsError, and whatever else a bad file raises
                    log.error("experiments file %s invalid, %s: %s", self.path, "previous version kept"
                              if self._spec.experiments else "no experiment runs", exc)
            return self._spec

    def arm_unservable(self, experiment: str, why: str) -> None:
        """Log, once per version of the file, that an arm of ``experiment`` cannot be served (its profile was removed
        or renamed since the file was read); the caller serves its clients as if the experiment did not run."""
        message = f"experiment {experiment!r}: {why}; its clients are served as if it did not run"
        if message not in self._said:
            self._said.add(message)
            log.error("%s", message)

    def assign(self, client_id: str | None, now: datetime | None = None) -> Assignment | None:
        """:func:`assign` over the current file (``now``: the current UTC time by default)."""
        return assign(self.current(), client_id, now or datetime.now(timezone.utc))

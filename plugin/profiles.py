"""Ranking profiles: named TOML files (plugin/profiles/*.toml) that say how a query is retrieved and fused.

A profile is read once into a typed :class:`Profile`; every key is checked, and an error names the file, the key,
the value and what is allowed. ``plugin/profiles/default.toml`` is the fully commented example of every key.
Profiles are found by name in the packaged folder and, when set, the folder in ``$SHOPSEARCH_PROFILES`` (a user
profile with the same name as a packaged one replaces it).
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .documents import TEXT_FIELDS
from .fusion import METHODS

PACKAGED_DIR = Path(__file__).parent / "profiles"
ENV_DIR = "SHOPSEARCH_PROFILES"
LEGS = ("bm25", "knn")
MAX_LEG_SIZE = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FUZZ = re.compile(r"^(AUTO|[012])$")


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file, the key, the value and what is allowed."""


class UnknownProfile(ValueError):
    """No profile has the requested name (a ValueError, so the API answers 400)."""


@dataclass(frozen=True)
class BM25Settings:
    """The lexical leg: multi-field best_fields BM25 with per-field boosts and typo tolerance."""

    enabled: bool = True
    size: int = 100
    fields: dict[str, float] = field(default_factory=lambda: {"title": 2.0, "description": 1.0})
    fuzziness: str | None = "AUTO"  # None: exact terms only
    tie_breaker: float = 0.3


@dataclass(frozen=True)
class KnnSettings:
    """The vector leg: k nearest products to the query embedding."""

    enabled: bool = True
    k: int = 100


@dataclass(frozen=True)
class FusionSettings:
    """How the legs' ranked lists become one (see shopsearch.plugin.fusion)."""

    method: str = "rrf"
    rrf_k: float = 60.0
    weights: dict[str, float] = field(default_factory=lambda: {"bm25": 1.0, "knn": 1.0})


@dataclass(frozen=True)
class RerankSettings:
    """Cross-encoder reranking of the fused top ``depth`` within ``budget_ms`` (0 depth or no model: off)."""

    depth: int = 0
    budget_ms: float = 150.0
    model: str | None = None
    combine: str = "none"  # "none": cross-encoder order; "rrf": RRF of cross-encoder and incoming ranks
    rrf_k: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.depth > 0 and self.model is not None


RERANK_COMBINE = ("none", "rrf")


@dataclass(frozen=True)
class ConversionSettings:
    """LightGBM conversion-model ordering of the (reranked) top ``depth`` (0 depth or no model: off)."""

    depth: int = 0
    model: str | None = None
    combine: str = "none"  # "none": conversion order; "rrf": RRF of conversion and incoming ranks
    rrf_k: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.depth > 0 and self.model is not None


@dataclass(frozen=True)
class Profile:
    """A parsed, validated ranking profile."""

    name: str
    description: str = ""
    bm25: BM25Settings = BM25Settings()
    knn: KnnSettings = KnnSettings()
    fusion: FusionSettings = FusionSettings()
    rerank: RerankSettings = RerankSettings()
    conversion: ConversionSettings = ConversionSettings()
    path: Path | None = None

    @property
    def legs(self) -> tuple[str, ...]:
        """Names of the enabled legs, in the order they are sent to the engine."""
        return tuple(name for name in LEGS if getattr(self, name).enabled)


class _Reader:
    """Pulls typed values out of one TOML table, reporting errors as ``file: key = value: must be ...``."""

    def __init__(self, path: Path | str, table: dict[str, Any], prefix: str, allowed: Sequence[str]):
        self.path, self.table, self.prefix = path, table, prefix
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            self.fail(unknown[0], table[unknown[0]], f"be one of the keys allowed in {where}: {', '.join(allowed)}")

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise ProfileError(f"{self.path}: {self.prefix}{key} = {value!r}: must {allowed}")

    def table_of(self, key: str) -> dict[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, value, "be a table")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, value, "be true or false")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, *, integer: bool = False,
               lo_open: bool = False) -> Any:
        value = self.table.get(key, default)
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        in_range = ok_type and not isinstance(value, bool) and math.isfinite(value) and (
            (value > lo if lo_open else value >= lo) and value <= hi)
        if not in_range:
            kind = "an integer" if integer else "a number"
            self.fail(key, value, f"be {kind} {'>' if lo_open else '>='} {lo:g} and <= {hi:g}")
        return value if integer else float(value)

    def string(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str):
            self.fail(key, value, "be a string")
        return value


def _fuzziness(r: _Reader) -> str | None:
    """``"AUTO"``, 0, 1 or 2 (edits allowed); ``false`` or ``"off"`` disables it (what both engines support)."""
    value = r.table.get("fuzziness", "AUTO")
    if value is False or value == "off":
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _FUZZ.match(text):
        r.fail("fuzziness", value, 'be "AUTO", 0, 1, 2, or false/"off" to disable')
    return text


def _model_name(r: _Reader) -> str | None:
    """A model name (looked up in the model folders, never a path), or None for "" (no model)."""
    name = r.string("model", "").strip()
    if name and not _NAME.match(name):
        r.fail("model", name, "be a model name (letters, digits, '_', '.', '-'; no path), or \"\" for none")
    return name or None


def _combine(r: _Reader) -> dict[str, Any]:
    """A rerank stage's ``combine`` (one of RERANK_COMBINE) and ``rrf_k`` keys."""
    combine = r.string("combine", "none")
    if combine not in RERANK_COMBINE:
        r.fail("combine", combine, f"be one of {', '.join(RERANK_COMBINE)}")
    return {"combine": combine, "rrf_k": r.number("rrf_k", 60.0, 0.0, 10_000.0, lo_open=True)}


def parse_profile(data: dict[str, Any], name: str, path: Path | str = "<profile>") -> Profile:
    """Validate a profile's parsed TOML into a :class:`Profile`.

    Args:
        data: the TOML document as a dict.
        name: the profile's name (its file stem).
        path: where it came from, for error messages.

    Returns:
        The Profile; keys left out take the defaults shown in default.toml.

    Raises:
        ProfileError: an unknown key, a wrong type, a value out of range, or no leg enabled.

    >>> parse_profile({"knn": {"enabled": False}}, "lexical").legs
    ('bm25',)
    """
    top = _Reader(path, data, "", ("description", "bm25", "knn", "fusion", "rerank", "conversion"))
    description = top.string("description", "")

    b = _Reader(path, top.table_of("bm25"), "bm25.", ("enabled", "size", "fields", "fuzziness", "tie_breaker"))
    # A [bm25.fields] table replaces the default field set as a whole (a field left out is not searched).
    given = b.table_of("fields")
    fr = _Reader(path, given, "bm25.fields.", TEXT_FIELDS)
    fields = {fname: fr.number(fname, 1.0, 0.0, 1000.0, lo_open=True) for fname in given} or BM25Settings().fields
    bm25 = BM25Settings(enabled=b.boolean("enabled", True), size=b.number("size", 100, 1, MAX_LEG_SIZE, integer=True),
                        fields=fields, fuzziness=_fuzziness(b),
                        tie_breaker=b.number("tie_breaker", 0.3, 0.0, 1.0))

    k = _Reader(path, top.table_of("knn"), "knn.", ("enabled", "k"))
    knn = KnnSettings(enabled=k.boolean("enabled", True), k=k.number("k", 100, 1, MAX_LEG_SIZE, integer=True))

    f = _Reader(path, top.table_of("fusion"), "fusion.", ("method", "rrf_k", "weights"))
    method = f.string("method", "rrf")
    if method not in METHODS:
        f.fail("method", method, f"be one of {', '.join(METHODS)}")
    w = _Reader(path, f.table_of("weights"), "fusion.weights.", LEGS)
    weights = {leg: w.number(leg, 1.0, 0.0, 1000.0) for leg in LEGS}
    fusion = FusionSettings(method=method, rrf_k=f.number("rrf_k", 60.0, 0.0, 10_000.0, lo_open=True),
                            weights=weights)

    r = _Reader(path, top.table_of("rerank"), "rerank.", ("depth", "budget_ms", "model", "combine", "rrf_k"))
    rerank = RerankSettings(depth=r.number("depth", 0, 0, MAX_LEG_SIZE, integer=True),
                            budget_ms=r.number("budget_ms", 150.0, 0.0, 60_000.0, lo_open=True),
                            model=_model_name(r), **_combine(r))

    c = _Reader(path, top.table_of("conversion"), "conversion.", ("depth", "model", "combine", "rrf_k"))
    conversion = ConversionSettings(depth=c.number("depth", 0, 0, MAX_LEG_SIZE, integer=True), model=_model_name(c),
                                    **_combine(c))

    if not (bm25.enabled or knn.enabled):
        raise ProfileError(f"{path}: bm25.enabled = false and knn.enabled = false: must enable at least one leg")
    enabled = [leg for leg in LEGS if (bm25 if leg == "bm25" else knn).enabled]
    if all(weights[leg] == 0 for leg in enabled):
        raise ProfileError(f"{path}: fusion.weights = {weights}: must give an enabled leg a weight > 0")
    return Profile(name=name, description=description, bm25=bm25, knn=knn, fusion=fusion, rerank=rerank,
                   conversion=conversion, path=Path(path) if isinstance(path, Path) else None)


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file; its name is the file stem.

    Raises:
        FileNotFoundError: no such file.
        ProfileError: invalid TOML or an invalid key (the message names file, key, value and what is allowed).

    >>> load_profile(PACKAGED_DIR / "bm25.toml").legs
    ('bm25',)
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, path.stem, path)


class ProfileStore:
    """Finds profiles by name in a list of folders; later folders override earlier ones.

    Files are re-read when their modification time changes, so an engineer can edit a profile on a running server.

    >>> ProfileStore().get("default").name
    'default'
    """

    def __init__(self, dirs: Sequence[str | Path] | None = None):
        """Args: dirs: folders to search (default: the packaged folder, then ``$SHOPSEARCH_PROFILES`` if set).

        Raises:
            ValueError: a given folder does not exist.
        """
        if dirs is None:
            dirs = [PACKAGED_DIR] + ([Path(os.environ[ENV_DIR])] if os.environ.get(ENV_DIR) else [])
        self.dirs = [Path(d) for d in dirs]
        for d in self.dirs:
            if not d.is_dir():
                raise ValueError(f"profile folder {str(d)!r} does not exist (check ${ENV_DIR})")
        self._cache: dict[Path, tuple[float, Profile]] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path | None:
        for d in reversed(self.dirs):
            p = d / f"{name}.toml"
            if p.is_file():
                return p
        return None

    def names(self) -> list[str]:
        """Every available profile name, sorted (REFERENCE-style files starting with an uppercase letter skipped)."""
        return sorted({p.stem for d in self.dirs for p in d.glob("*.toml") if not p.stem[:1].isupper()})

    def get(self, name: str) -> Profile:
        """The profile called ``name``.

        Raises:
            UnknownProfile: no such profile (the message lists those available).
            ProfileError: the file exists but is invalid.
        """
        path = self._path(name) if isinstance(name, str) and _NAME.match(name) else None
        if path is None:
            raise UnknownProfile(f"profile {name!r} does not exist; available: {', '.join(self.names())}")
        mtime = path.stat().st_mtime
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
        profile = load_profile(path)
        with self._lock:
            self._cache[path] = (mtime, profile)
        return profile

"""Ranking profiles: named TOML files (plugin/profiles/*.toml) that say how a query is retrieved and fused.

A profile file is validated by the pydantic model :class:`ProfileFile` (strict types, unknown keys are errors)
into a :class:`Profile`; an error names the file, the dotted key, the value and what is allowed. The same model
produces the JSON Schema of profile files, docs/schemas/profile.schema.json (``shopsearch schema`` writes it;
a test keeps it current). ``plugin/profiles/default.toml`` is the fully commented example of every key.
Profiles are found by name in the packaged folder and, when set, the ``profiles_dir`` setting
(``$SHOPSEARCH_PROFILES``; a profile there with the name of a packaged one replaces it).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from shopsearch.config_files import FILE_MODEL, file_schema, must, read_toml, validate_file
from shopsearch.settings import Settings, env_var, load_settings

from .documents import TEXT_FIELDS
from .fusion import METHODS

PACKAGED_DIR = Path(__file__).parent / "profiles"
LEGS = ("bm25", "knn")
RERANK_COMBINE = ("none", "rrf")
MAX_LEG_SIZE = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FUZZ = re.compile(r"^(AUTO|[012])$")


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file, the key, the value and what is allowed."""


class UnknownProfile(ValueError):
    """No profile has the requested name (a ValueError, so the API answers 400)."""


def _fuzziness(value: Any) -> str | None:
    """``"AUTO"``, 0, 1 or 2 (edits allowed); ``false`` or ``"off"`` disables it (what both engines support)."""
    if value is False or value == "off":
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _FUZZ.match(text):
        raise must('be "AUTO", 0, 1, 2, or false/"off" to disable')
    return text


def _model_name(value: Any) -> str | None:
    """A model name (looked up in the model folders, never a path), or None for "" (no model)."""
    if not isinstance(value, str):
        raise must("be a string")
    name = value.strip()
    if name and not _NAME.match(name):
        raise must("be a model name (letters, digits, '_', '.', '-'; no path), or \"\" for none")
    return name or None


Fuzziness = Annotated[str | None, BeforeValidator(_fuzziness), WithJsonSchema(
    {"anyOf": [{"enum": ["AUTO", "0", "1", "2", "off"]}, {"enum": [0, 1, 2]}, {"const": False}]})]
ModelName = Annotated[str | None, BeforeValidator(_model_name), WithJsonSchema(
    {"type": "string", "pattern": r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)?\s*$"})]
Depth = Annotated[int, Field(ge=0, le=MAX_LEG_SIZE)]
RrfK = Annotated[float, Field(gt=0, le=10_000)]
# Literal over the tuples the other modules use, so a new field, method or leg is declared once.
TextField = Literal[TEXT_FIELDS]
Leg = Literal[LEGS]
Combine = Literal[RERANK_COMBINE]


class BM25Settings(BaseModel):
    """The lexical leg: multi-field best_fields BM25 with per-field boosts and typo tolerance."""

    model_config = FILE_MODEL
    enabled: bool = Field(True, description="Run the lexical leg (bm25 or knn must be enabled)")
    size: int = Field(100, ge=1, le=MAX_LEG_SIZE, description="Candidates the leg returns")
    fields: dict[TextField, Annotated[float, Field(gt=0, le=1000)]] = Field(
        {"title": 2.0, "description": 1.0},
        description="Searched fields and their boosts; a table replaces the default set as a whole")
    fuzziness: Fuzziness = Field("AUTO", description='Typo tolerance: "AUTO", 0, 1, 2, or false/"off"')
    tie_breaker: float = Field(0.3, ge=0, le=1, description="best_fields: weight of the fields besides the best")

    @field_validator("fields")
    @classmethod
    def _default_fields(cls, value: dict[str, float]) -> dict[str, float]:
        return value or dict(cls.model_fields["fields"].default)


class KnnSettings(BaseModel):
    """The vector leg: k nearest products to the query embedding."""

    model_config = FILE_MODEL
    enabled: bool = Field(True, description="Run the vector leg (bm25 or knn must be enabled)")
    k: int = Field(100, ge=1, le=MAX_LEG_SIZE, description="Nearest neighbours returned")
    min_score: float = Field(0.7, gt=0, le=1, description="A product matches by vector when its score, "
                             "(1 + cos) / 2, is at least this (OpenSearch radial search)")
    relative_score: float = Field(0.0, ge=0, le=1, description="...and at least this fraction of the best "
                                  "vector hit's score (0: no relative cut-off)")


class FusionSettings(BaseModel):
    """How the legs' ranked lists become one (see shopsearch.plugin.fusion)."""

    model_config = FILE_MODEL
    method: Literal[METHODS] = Field("rrf", description="rrf (ranks), minmax or zscore (scores)")
    rrf_k: RrfK = Field(60.0, description="RRF constant; larger flattens the top ranks' advantage")
    weights: dict[Leg, Annotated[float, Field(ge=0, le=1000)]] = Field(
        dict.fromkeys(LEGS, 1.0), description="Per-leg weights (a leg left out: 1.0)")

    @field_validator("weights")
    @classmethod
    def _every_leg(cls, value: dict[str, float]) -> dict[str, float]:
        return {leg: value.get(leg, 1.0) for leg in LEGS}


class StageSettings(BaseModel):
    """A model that reorders the head of the ranking: its top `depth` results (off without depth and model)."""

    model_config = FILE_MODEL
    depth: Depth = Field(0, description="Results the stage reorders (0: off); ranks below keep their order")
    model: ModelName = Field(None, json_schema_extra={"default": ""},
                             description='Model name, a folder in the model directories ("": none)')
    combine: Combine = Field("none", description="none: the model's order; rrf: RRF of its ranks and the incoming")
    rrf_k: RrfK = Field(60.0, description="k of the combine = rrf fusion")

    @property
    def enabled(self) -> bool:
        return self.depth > 0 and self.model is not None


class RerankSettings(StageSettings):
    """Cross-encoder reranking of the fused top `depth` within `budget_ms` (off without depth and model)."""

    budget_ms: float = Field(150.0, gt=0, le=60_000, description="Latency budget; over it the fused order is served")


class ConversionSettings(StageSettings):
    """LightGBM conversion-model ordering of the (reranked) top `depth` (off without depth and model)."""


class ExploreSettings(BaseModel):
    """Exploration on served first pages (reranker/exploration.py): a share of them shows the ranking with
    randomised adjacent swaps, so the logs can tell where a product was shown from how good it is."""

    model_config = FILE_MODEL
    share: float = Field(0.0, ge=0, le=1, description="Share of served first pages (relevance order) that explore "
                         "(0: off)")
    depth: int = Field(10, ge=2, le=100, description="Positions from the top whose neighbours may swap")


class ProfileFile(BaseModel):
    """What a profile file holds; every key is optional (default.toml shows each with its default)."""

    model_config = FILE_MODEL
    description: str = Field("", description="Free text shown in listings and explain output")
    # Factories, not instances: the schema then shows each key's default instead of a copy of the whole table.
    bm25: BM25Settings = Field(default_factory=BM25Settings)
    knn: KnnSettings = Field(default_factory=KnnSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    conversion: ConversionSettings = Field(default_factory=ConversionSettings)
    explore: ExploreSettings = Field(default_factory=ExploreSettings)

    @model_validator(mode="after")
    def _some_leg_counts(self) -> ProfileFile:
        if not (self.bm25.enabled or self.knn.enabled):
            raise ValueError("bm25.enabled = false and knn.enabled = false: must enable at least one leg")
        if all(self.fusion.weights[leg] == 0 for leg in LEGS if getattr(self, leg).enabled):
            raise ValueError(f"fusion.weights = {self.fusion.weights}: must give an enabled leg a weight > 0")
        return self


class Profile(ProfileFile):
    """A parsed, validated ranking profile: the file's settings, its name (the file stem) and its path."""

    name: str
    path: Path | None = None

    @property
    def legs(self) -> tuple[str, ...]:
        """Names of the enabled legs, in the order they are sent to the engine."""
        return tuple(name for name in LEGS if getattr(self, name).enabled)


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of profile files (docs/schemas/profile.schema.json).

    >>> sorted(profile_schema()["properties"])
    ['bm25', 'conversion', 'description', 'explore', 'fusion', 'knn', 'rerank']
    """
    return file_schema(ProfileFile, title="shopsearch ranking profile", source="plugin/profiles.py")


def parse_profile(data: Mapping[str, Any], name: str, path: Path | str = "<profile>") -> Profile:
    """Validate a profile's parsed TOML into a :class:`Profile`.

    Args:
        data: the TOML document as a dict.
        name: the profile's name (its file stem).
        path: where it came from, for error messages.

    Returns:
        The Profile; keys left out take the defaults shown in default.toml.

    Raises:
        ProfileError: an unknown key, a wrong type, a value out of range, or no leg enabled (one line per bad key).

    >>> parse_profile({"knn": {"enabled": False}}, "lexical").legs
    ('bm25',)
    """
    spec = validate_file(ProfileFile, data, path, ProfileError)
    return Profile.model_validate({**dict(spec), "name": name, "path": path if isinstance(path, Path) else None})


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file; its name is the file stem.

    Raises:
        FileNotFoundError: no such file.
        ProfileError: invalid TOML or an invalid key (the message names file, key, value and what is allowed).

    >>> load_profile(PACKAGED_DIR / "bm25.toml").legs
    ('bm25',)
    """
    path = Path(path)
    return parse_profile(read_toml(path, ProfileError), path.stem, path)


class ProfileStore:
    """Finds profiles by name in a list of folders; later folders override earlier ones.

    Files are re-read when their modification time changes, so an engineer can edit a profile on a running server.

    >>> ProfileStore([PACKAGED_DIR]).get("default").name
    'default'
    """

    def __init__(self, dirs: Sequence[str | Path] | None = None, *, settings: Settings | None = None):
        """Args:
            dirs: folders to search; None: the packaged folder, then the ``profiles_dir`` setting when set.
            settings: where ``profiles_dir`` comes from when ``dirs`` is None (default: :func:`load_settings`).

        Raises:
            ValueError: a given folder does not exist.
        """
        hint = ""
        if dirs is None:
            extra = (settings or load_settings()).profiles_dir
            dirs = [PACKAGED_DIR] + ([extra] if extra else [])
            hint = f" (check the profiles_dir setting, ${env_var('profiles_dir')})"
        self.dirs = [Path(d) for d in dirs]
        for d in self.dirs:
            if not d.is_dir():
                raise ValueError(f"profile folder {str(d)!r} does not exist{hint}")
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

"""Configuration files a search engineer edits (ranking profiles, field mappings): read, validate, describe.

Each kind of file is a strict pydantic model with unknown keys forbidden (``FILE_MODEL``). This module reads the
TOML, turns the model's ValidationError into one line per bad key that names the file, the dotted key, the value
and what is allowed (read from the model's own JSON Schema, so message and schema cannot disagree), and renders
that JSON Schema for editors and docs: docs/schemas/*.schema.json, written by ``shopsearch schema``.

    >>> from pydantic import BaseModel, Field
    >>> class Leg(BaseModel):
    ...     model_config = FILE_MODEL
    ...     size: int = Field(100, ge=1, le=1000)
    >>> validate_file(Leg, {"size": 0}, "leg.toml")
    Traceback (most recent call last):
    ...
    ValueError: leg.toml: size = 0: must be an integer >= 1 and <= 1000
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# TOML values arrive typed, so nothing is coerced ("100" is not a size); a typo'd key is an error, not ignored.
FILE_MODEL = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_MUST = "config_must"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
log = logging.getLogger(__name__)


def must(allowed: str) -> PydanticCustomError:
    """The error a validator raises for a bad value: ``allowed`` completes "must ..." (e.g. ``"be a string"``)."""
    return PydanticCustomError(_MUST, allowed)  # no context given, so braces in ``allowed`` stay as written


def read_text(path: str | Path, error: type[Exception] = ValueError, encoding: str = "utf-8") -> str:
    """A configuration file's text; a byte that is not UTF-8 (a Latin-1 editor's "café") is an ``error`` naming the
    file and the byte's offset, not a bare codec message.

    Raises:
        FileNotFoundError: no such file.
        error: not UTF-8.
    """
    try:
        return Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start}); "
                    f"save it as UTF-8") from None


def read_toml(path: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The parsed TOML document at ``path``.

    Raises:
        FileNotFoundError: no such file.
        error: the file is not UTF-8 or not valid TOML (the message names the file and what is wrong).

    >>> read_toml("/nonexistent.toml")
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent.toml'
    """
    text = read_text(path, error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def validate_file(model: type[M], data: Mapping[str, Any], where: str | Path,
                  error: type[Exception] = ValueError) -> M:
    """Validate a parsed file against ``model``.

    Args:
        model: the file's model (configured with ``FILE_MODEL``).
        data: the parsed document.
        where: the file (or another label) named at the start of each error line.
        error: the exception type raised (a ValueError subclass keeps the API's 400 answer).

    Returns:
        The validated model.

    Raises:
        error: one line per bad key, ``FILE: dotted.key = value: must ...``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(describe_errors(exc, data, model.model_json_schema(), where)) from None


def describe_errors(exc: ValidationError, data: Mapping[str, Any], schema: Mapping[str, Any],
                    where: str | Path) -> str:
    """``exc`` as lines ``WHERE: key = value: must ALLOWED``, one per bad key, in the order of the model's keys.

    A rule across keys (raised as a ValueError by a model validator) is its own line, ``WHERE: message``.
    """
    lines: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # a dict key outside the allowed set arrives as (..., key, "[key]")
        unknown_key = err["type"] == "extra_forbidden" or (loc and loc[-1] == "[key]")
        loc = loc[:-1] if loc and loc[-1] == "[key]" else loc
        if loc in seen:  # a union reports each member's error; the first says enough
            continue
        seen.add(loc)
        if not loc or err["type"] == "value_error":  # a rule across keys: the model's own words
            at = f" {'.'.join(str(part) for part in loc)}:" if loc else ""
            lines.append(f"{where}:{at} {err['msg'].removeprefix('Value error, ')}")
            continue
        key = ".".join(str(part) for part in loc)
        if err["type"] == "missing":  # the input pydantic reports is the table the key is missing from
            lines.append(f"{where}: {key} is required")
            continue
        if unknown_key:
            value, allowed = _value_at(data, loc), _keys_allowed(_schema_at(schema, loc[:-1]), loc[:-1])
        else:
            value = err["input"]
            allowed = err["msg"] if err["type"] == _MUST else _allowed(_schema_at(schema, loc))
            allowed = allowed or f"be valid ({err['msg']})"  # a node too complex to phrase: pydantic's words
        lines.append(f"{where}: {key} = {value!r}: must {allowed}")
    return "\n".join(lines)


def file_schema(model: type[BaseModel], *, title: str, source: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of the files ``model`` validates, with a ``$comment`` saying how it is made.

    Args:
        model: the file's model.
        title: the schema's title (what the file is).
        source: the module that defines ``model``, named in the ``$comment``.

    >>> from pydantic import BaseModel
    >>> class Empty(BaseModel):
    ...     model_config = FILE_MODEL
    >>> file_schema(Empty, title="empty", source="x.py")["$schema"]
    'https://json-schema.org/draft/2020-12/schema'
    """
    schema = model.model_json_schema()
    schema["title"] = title
    return {"$schema": JSON_SCHEMA_DIALECT,
            "$comment": f"Generated from {source} by `shopsearch schema`; do not edit.", **schema}


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:  # a key of a table, or the index of an array of tables ([[rule]]: rule.0.bury)
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, (list, tuple)) and isinstance(part, int) and -len(data) <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _schema_at(schema: Mapping[str, Any], loc: tuple[Any, ...]) -> Mapping[str, Any]:
    """The sub-schema that validates the value at ``loc`` ({} when the schema does not say)."""
    defs = schema.get("$defs", {})

    def deref(node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        return deref(defs[ref.rsplit("/", 1)[-1]]) if ref else node

    def one(node: Mapping[str, Any]) -> Mapping[str, Any]:  # an optional table (X | None): X
        tables = [deref(n) for n in node.get("anyOf", ()) if deref(n).get("type") != "null"]
        return tables[0] if len(tables) == 1 else node

    node = one(deref(schema))
    for part in loc:
        node = one(node)
        if part in node.get("properties", {}):
            node = deref(node["properties"][part])
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = deref(node["additionalProperties"])
        elif node.get("patternProperties"):  # a table keyed by names of one pattern (dict[Name, Model])
            node = deref(next(iter(node["patternProperties"].values())))
        elif isinstance(node.get("items"), Mapping):
            node = deref(node["items"])
        else:
            return {}
    return one(node)


def _keys_allowed(table: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    keys = list(table.get("properties", {})) or list(table.get("propertyNames", {}).get("enum", []))
    where = f"in [{'.'.join(str(p) for p in loc)}]" if loc else "at the top level"
    if not keys and table.get("patternProperties"):
        return f"be a key matching {' or '.join(table['patternProperties'])} {where}"
    return f"be one of the keys allowed {where}: {', '.join(keys)}"


def _allowed(node: Mapping[str, Any]) -> str:
    """What a schema node allows, as the end of "must ..." ("" when it is not a simple node)."""
    if "enum" in node:
        return f"be one of {', '.join(str(v) for v in node['enum'])}"
    if "anyOf" in node:
        return " or ".join(filter(None, (_allowed(n) for n in node["anyOf"])))
    kind = node.get("type")
    if kind in ("integer", "number"):
        bounds = [f"{op} {_num(node[key])}" for key, op in (("exclusiveMinimum", ">"), ("minimum", ">="),
                                                            ("exclusiveMaximum", "<"), ("maximum", "<="))
                  if key in node]
        return " ".join(["be an integer" if kind == "integer" else "be a number", " and ".join(bounds)]).strip()
    if kind == "array" and "minItems" in node:
        return f"be a list of at least {node['minItems']} items"
    if kind == "string" and node.get("pattern"):
        return f"be a string matching {node['pattern']}"
    return {"boolean": "be true or false", "object": "be a table", "array": "be a list",
            "string": "be a non-empty string" if node.get("minLength") else "be a string"}.get(kind, "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class WatchedFile(Generic[T]):
    """A file an engineer edits on a running server: read again when it changes, the last good version kept.

    :meth:`get` costs one ``stat`` while the file is unchanged (modification time and size); when they change
    the file is loaded again. A file that fails to load (bad TOML, a bad key) is logged as an error with the
    loader's message (file, line or key) and the last good value stays in force; a missing file gives ``empty``.

    Args:
        path: the file.
        load: reads and validates it (raises ValueError or OSError when it cannot).
        empty: the value while there is no file.

    >>> WatchedFile(Path("/nonexistent.toml"), read_toml, {}).get()
    {}
    """

    def __init__(self, path: str | Path, load: Callable[[Path], T], empty: T):
        self.path = Path(path)
        self._load = load
        self._empty = empty
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._value: T = empty
        self.error: str | None = None  # the last load's error, None when the value is the file's

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def get(self) -> T:
        """The file's current value (see the class notes)."""
        key = self._stat()
        if key == self._key:
            return self._value
        with self._lock:
            if key == self._key:
                return self._value
            if key is None:
                self._value, self.error = self._empty, None
            else:
                try:
                    self._value, self.error = self._load(self.path), None
                except (ValueError, OSError) as exc:
                    self.error = str(exc)
                    log.error("%s: not loaded, the last good version stays in force: %s", self.path, exc)
            self._key = key
            return self._value


class IndexFiles(Generic[T]):
    """One :class:`WatchedFile` per index, ``<folder>/<index><suffix>`` (merchandising rules, synonyms).

    Args:
        folder: where the files live; None: no files, every index gets ``empty``.
        suffix: the file name after the index name (e.g. ``.rules.toml``).
        load, empty: as :class:`WatchedFile` takes them.

    >>> IndexFiles(None, ".rules.toml", read_toml, {}).get("products")
    {}
    """

    def __init__(self, folder: str | Path | None, suffix: str, load: Callable[[Path], T], empty: T):
        self.folder = Path(folder) if folder else None
        self.suffix, self._load, self._empty = suffix, load, empty
        self._files: dict[str, WatchedFile[T]] = {}
        self._lock = threading.Lock()

    def path(self, index: str) -> Path | None:
        """Where ``index``'s file is (whether or not it exists); None without a folder."""
        return self.folder / f"{index}{self.suffix}" if self.folder else None

    def get(self, index: str) -> T:
        """``index``'s value in force (a stat of its file; reloaded when it changed)."""
        path = self.path(index)
        if path is None:
            return self._empty
        with self._lock:
            watched = self._files.get(index)
            if watched is None:
                watched = self._files[index] = WatchedFile(path, self._load, self._empty)
        return watched.get()


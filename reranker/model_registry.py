"""Models by name: find a model folder in the model directories, load it once, share it between threads.

House rule: profiles name models (``rerank.model = "ce-minilm"``), never paths. A name is looked up as a folder in
the settings' ``models_dir`` (``$SHOPSEARCH_MODELS``, default ``<home>/models``), then ``./models`` (the working
directory's, where ``shopsearch train ... --out models/NAME`` writes).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from shopsearch.settings import Settings, load_settings

log = logging.getLogger(__name__)

KINDS = ("cross_encoder", "conversion")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelNotFound(FileNotFoundError):
    """No folder of that name in any model directory; the message names the model and every place looked in."""


def default_model_dirs(settings: Settings | None = None) -> list[Path]:
    """The settings' ``models_dir`` (default ``<home>/models``), then ``./models``.

    >>> [str(d) for d in default_model_dirs(load_settings({"models_dir": "/m"}, environ={}))]
    ['/m', 'models']
    """
    settings = settings or load_settings()
    return [settings.models_dir, Path("models")]


def open_cross_encoder(path: Path, **kwargs: Any) -> Any:
    """The cross-encoder in ``path``: one model, or an ensemble folder's members as one (``ensemble.toml``)."""
    from .cross_encoder import CrossEncoderReranker
    from .cross_encoder_ensemble import CrossEncoderEnsemble, is_ensemble

    return (CrossEncoderEnsemble if is_ensemble(path) else CrossEncoderReranker)(path, **kwargs)


def _load_conversion(path: Path) -> Any:
    from .conversion import ConversionModel

    return ConversionModel.load(path)


def load_cross_encoder(name_or_dir: str, registry: "ModelRegistry | None" = None) -> Any:
    """A cross-encoder from a model folder, or else by name from the registry (for training-time scoring).

    Raises:
        ModelNotFound: neither a folder nor a registered name.
    """
    from .cross_encoder_ensemble import is_cross_encoder_dir

    path = Path(name_or_dir)
    if is_cross_encoder_dir(path) or (path / "config.json").is_file():  # another model's folder: say which
        return open_cross_encoder(path)
    return (registry or ModelRegistry()).cross_encoder(name_or_dir)


class ModelRegistry:
    """Loads cross-encoders and conversion models by name, once each, thread-safely.

    Args:
        dirs: model directories, searched in order (default :func:`default_model_dirs`); missing ones are skipped.
        loaders: kind -> ``load(path)`` (default: CrossEncoderReranker / ConversionModel.load); tests swap them.

    >>> models = ModelRegistry(["/srv/models"])  # doctest: +SKIP
    >>> models.cross_encoder("ce-minilm").rerank("red lamp", hits, depth=50)  # doctest: +SKIP
    """

    def __init__(self, dirs: Sequence[str | Path] | None = None,
                 loaders: dict[str, Callable[[Path], Any]] | None = None) -> None:
        self.dirs = [Path(d) for d in (dirs if dirs is not None else default_model_dirs())]
        self.loaders = {"cross_encoder": open_cross_encoder, "conversion": _load_conversion, **(loaders or {})}
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # guards _cache and serialises loads (each model loads exactly once)

    def find(self, name: str) -> Path:
        """The folder of model ``name``: the first ``<dir>/<name>`` that exists.

        Raises:
            ValueError: ``name`` is not a plain name (a path, empty, odd characters).
            ModelNotFound: no directory holds it (the message lists where it looked).
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"model name {name!r} must be a name (letters, digits, '_', '.', '-'), not a path")
        for d in self.dirs:
            if (d / name).is_dir():
                return d / name
        looked = ", ".join(str(d.resolve() if not d.is_absolute() else d) for d in self.dirs)
        raise ModelNotFound(f"model {name!r} not found; looked in: {looked} (set $SHOPSEARCH_MODELS or train it with "
                            f"`shopsearch train ... --out models/{name}`)")

    def check(self, kind: str, name: str) -> Path:
        """Find a model without loading it (for a fail-fast check before a long run); same errors as :meth:`find`."""
        self._kind(kind)
        return self.find(name)

    def get(self, kind: str, name: str) -> Any:
        """The loaded model ``name`` of ``kind`` (``"cross_encoder"`` or ``"conversion"``), loaded on first use.

        Raises:
            ValueError: unknown kind or a bad name. ModelNotFound: no such folder.
            Whatever the loader raises for a folder that is not a valid model (not cached: fixed files load later).
        """
        self._kind(kind)
        key = (kind, name)
        model = self._cache.get(key)
        if model is not None:
            return model
        with self._lock:
            if key not in self._cache:
                path = self.find(name)
                t0 = time.perf_counter()
                self._cache[key] = self.loaders[kind](path)
                log.info("loaded %s model %r from %s in %.1fs", kind, name, path, time.perf_counter() - t0)
            return self._cache[key]

    def cross_encoder(self, name: str) -> Any:
        """The :class:`~shopsearch.reranker.cross_encoder.CrossEncoderReranker` called ``name``."""
        return self.get("cross_encoder", name)

    def conversion(self, name: str) -> Any:
        """The :class:`~shopsearch.reranker.conversion.ConversionModel` called ``name``."""
        return self.get("conversion", name)

    def loaded(self) -> list[tuple[str, str]]:
        """(kind, name) of every model loaded so far."""
        with self._lock:
            return sorted(self._cache)

    @staticmethod
    def _kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")

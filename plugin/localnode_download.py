"""Which Maven Central artifacts make up the local OpenSearch node, and fetching them sha1-checked into a cache.

OpenSearch's core ``integ-test-zip`` ships only ``transport-netty4``; analysis-common and lang-painless exist on
Maven only as jars, so they are listed here with painless's runtime dependencies (from its .pom) and assembled into
module folders by ``localnode_install``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from shopsearch.settings import load_settings

log = logging.getLogger(__name__)

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
OPENSEARCH_VERSION = "2.19.1"
# Plugins are versioned <core>.<build>; the k-NN build must match the core exactly or the node refuses to load it.
PLUGIN_VERSION = f"{OPENSEARCH_VERSION}.0"
# Maven Central has neural-search-2.19.1.0.zip but no .sha1/.md5 beside it, so its digest is pinned here
# (taken from the 8,434,600-byte file downloaded and installed while building this module).
NEURAL_SEARCH_SHA1 = {"2.19.1.0": "af25af4caf1d2a7563e187df1b97dc4559c6176e"}


@dataclass(frozen=True)
class Artifact:
    """One Maven artifact: ``group:name:version`` with a file extension; ``role`` says where it goes in the node."""

    group: str
    name: str
    version: str
    ext: str
    role: str  # "core", "module:<name>" or "plugin:<name>"
    # Used only where Maven publishes no .sha1 (neural-search 2.19.1.0): the digest of the file we first vetted.
    pinned_sha1: str | None = None

    @property
    def filename(self) -> str:
        """The file name Maven stores it under, e.g. ``opensearch-2.19.1.zip``."""
        return f"{self.name}-{self.version}.{self.ext}"

    @property
    def path(self) -> str:
        """Path below the repository root, e.g. ``org/opensearch/.../opensearch-2.19.1.zip``."""
        return f"{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.filename}"


def node_artifacts(version: str = OPENSEARCH_VERSION, with_neural: bool = True) -> list[Artifact]:
    """Every artifact a node needs: core zip, module jars (+ painless deps) and plugin zips.

    Args:
        version: OpenSearch core version; plugins use ``<version>.0``.
        with_neural: include the neural-search plugin zip (hybrid query, normalization processor).
    Returns:
        Artifacts in install order (core first, plugins last).
    Example:
        >>> [a.filename for a in node_artifacts()][0]
        'opensearch-2.19.1.zip'
    """
    plugin_version = f"{version}.0"
    painless = "module:lang-painless"
    arts = [
        Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip", "core"),
        Artifact("org.opensearch.plugin", "analysis-common", version, "jar", "module:analysis-common"),
        Artifact("org.opensearch.plugin", "lang-painless", version, "jar", painless),
        Artifact("org.opensearch.plugin", "opensearch-scripting-painless-spi", version, "jar", painless),
        Artifact("org.antlr", "antlr4-runtime", "4.13.1", "jar", painless),
        *(Artifact("org.ow2.asm", name, "9.7", "jar", painless)
          for name in ("asm", "asm-util", "asm-tree", "asm-commons", "asm-analysis")),
        Artifact("org.opensearch.plugin", "opensearch-knn", plugin_version, "zip", "plugin:opensearch-knn"),
    ]
    if with_neural:
        # Extends only opensearch-knn; ml-commons (a 360 MB zip) is not needed for hybrid query + normalization.
        pin = NEURAL_SEARCH_SHA1.get(plugin_version)
        arts.append(Artifact("org.opensearch.plugin", "neural-search", plugin_version, "zip",
                             "plugin:opensearch-neural-search", pinned_sha1=pin))
    return arts


def cache_dir(root: Path, version: str = OPENSEARCH_VERSION) -> Path:
    """Download cache for one version: ``<root>/opensearch/<version>`` (``root``: the settings' ``cache_dir``)."""
    return Path(root) / "opensearch" / version


def sha1_of(path: Path) -> str:
    """Hex sha1 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha1()  # noqa: S324 - Maven publishes sha1; this is an integrity check, not security
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sha1_file(text: str) -> str:
    """The digest from a Maven ``.sha1`` file (some carry ``<digest>  <filename>``); raises ValueError if malformed."""
    token = text.strip().split()[0].lower() if text.strip() else ""
    if len(token) != 40 or any(c not in "0123456789abcdef" for c in token):
        raise ValueError(f"sha1 file content {text[:80]!r} is not a 40-hex-digit digest")
    return token


def fetch_artifacts(artifacts: list[Artifact], dest: Path | None = None,
                    base_url: str = MAVEN_CENTRAL) -> dict[Artifact, Path]:
    """Download every artifact not already cached, verifying each against Maven's published ``.sha1``.

    A cached file is trusted when its sha1 matches the ``.sha1`` stored beside it, so a second call downloads
    nothing. Shows a tqdm bar per file and logs a one-line summary.

    Args:
        artifacts: what to fetch (see ``node_artifacts``).
        dest: cache folder; defaults to :func:`cache_dir` of the settings' ``cache_dir``.
        base_url: Maven repository root.
    Returns:
        Map of artifact to its local file.
    Raises:
        RuntimeError: a download failed or its sha1 did not match.
    Example:
        >>> files = fetch_artifacts(node_artifacts())  # doctest: +SKIP
    """
    import requests
    from tqdm import tqdm

    dest = dest or cache_dir(load_settings().cache_dir)
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[Artifact, Path] = {}
    fetched, nbytes, t0 = 0, 0, time.monotonic()
    with requests.Session() as session:
        for art in artifacts:
            target = dest / art.filename
            sha_path = dest / f"{art.filename}.sha1"
            if target.exists() and sha_path.exists() and sha1_of(target) == parse_sha1_file(sha_path.read_text()):
                out[art] = target
                continue
            url = f"{base_url}/{art.path}"
            try:
                if art.pinned_sha1:
                    expected = art.pinned_sha1
                else:
                    resp = session.get(f"{url}.sha1", timeout=30)
                    resp.raise_for_status()
                    expected = parse_sha1_file(resp.text)
                part = target.with_name(target.name + ".part")
                with session.get(url, stream=True, timeout=60) as resp:
                    resp.raise_for_status()
                    total = int(resp.headers.get("content-length") or 0) or None
                    with part.open("wb") as fh, tqdm(total=total, unit="B", unit_scale=True,
                                                     desc=art.filename, leave=False) as bar:
                        for chunk in resp.iter_content(1 << 20):
                            fh.write(chunk)
                            bar.update(len(chunk))
            except requests.RequestException as exc:
                raise RuntimeError(f"could not download {url}: {exc}") from exc
            actual = sha1_of(part)
            if actual != expected:
                part.unlink(missing_ok=True)
                raise RuntimeError(f"sha1 mismatch for {url}: got {actual}, Maven says {expected}")
            part.replace(target)
            sha_path.write_text(expected + "\n")
            fetched += 1
            nbytes += target.stat().st_size
            out[art] = target
    secs = time.monotonic() - t0
    if fetched:
        log.info("downloaded %d of %d artifacts, %.1f MB in %.1f s (%.1f MB/s) into %s", fetched, len(artifacts),
                 nbytes / 1e6, secs, nbytes / 1e6 / max(secs, 1e-6), dest)
    else:
        log.info("all %d artifacts already cached in %s", len(artifacts), dest)
    return out

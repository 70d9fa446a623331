"""Assemble an OpenSearch home from the downloaded artifacts: core zip, module folders built from jars, plugin zips.

The home is built in a temporary sibling folder and renamed into place when complete, so a half-finished install
never looks like a node. A marker file records what went in.
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
import time
import zipfile
from pathlib import Path

from shopsearch.plugin.localnode_download import OPENSEARCH_VERSION, Artifact

log = logging.getLogger(__name__)

MARKER = ".shopsearch-install.json"
CLUSTER_NAME = "shopsearch"

# Plugin classes read from the 2.19.1 jars (org/opensearch/.../*Plugin.class). analysis-common registers a painless
# whitelist through the SPI, which is why it extends lang-painless (as in OpenSearch's own build.gradle).
MODULES = {
    "analysis-common": {
        "description": 'Adds "built in" analyzers to OpenSearch.',
        "classname": "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "extended.plugins": "lang-painless",
    },
    "lang-painless": {
        "description": "An easy, safe and fast scripting language for OpenSearch",
        "classname": "org.opensearch.painless.PainlessPlugin",
        "extended.plugins": "",
    },
}

# The same grants OpenSearch's modules/lang-painless/src/main/plugin-metadata/plugin-security.policy makes.
PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";

  // needed to find the classloader to load whitelisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


def plugin_descriptor(name: str, version: str = OPENSEARCH_VERSION) -> str:
    """``plugin-descriptor.properties`` text for one of the assembled modules (``MODULES`` keys).

    Raises:
        ValueError: ``name`` is not a module this installer assembles.
    Example:
        >>> "classname=org.opensearch.painless.PainlessPlugin" in plugin_descriptor("lang-painless")
        True
    """
    if name not in MODULES:
        raise ValueError(f"name={name!r} is not an assembled module; allowed: {sorted(MODULES)}")
    meta = MODULES[name]
    lines = [
        f"description={meta['description']}",
        f"version={version}",
        f"name={name}",
        f"classname={meta['classname']}",
        "java.version=11",
        f"opensearch.version={version}",
        "custom.foldername=",
        f"extended.plugins={meta['extended.plugins']}",
        "has.native.controller=false",
    ]
    return "\n".join(lines) + "\n"


def opensearch_yml() -> str:
    """The node's static config: one local node, no disk watermarks; the HTTP port is passed at start (``-E``)."""
    return "\n".join([
        "# Written by shopsearch (plugin/localnode_install.py); regenerated on reinstall.",
        f"cluster.name: {CLUSTER_NAME}",
        "node.name: shopsearch-local",
        "discovery.type: single-node",
        "network.host: 127.0.0.1",
        "path.data: data",
        "path.logs: logs",
        # The dev disk can be nearly full; without this the node turns every index read-only.
        "cluster.routing.allocation.disk.threshold_enabled: false",
        "action.auto_create_index: true",
        "",
    ])


def heap_options(heap: str) -> str:
    """``jvm.options.d`` text setting min = max heap (files there come after jvm.options, so they win)."""
    return f"-Xms{heap}\n-Xmx{heap}\n"


def is_installed(home: Path) -> bool:
    """True when ``home`` holds a completed install (its marker file exists)."""
    return (home / MARKER).is_file()


def _extract(zip_path: Path, dest: Path, strip_top: bool) -> None:
    """Unzip keeping unix modes (zipfile drops them), optionally stripping the single top-level folder."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = info.filename
            if strip_top:
                name = name.split("/", 1)[1] if "/" in name else ""
            if not name or name.startswith("/") or ".." in Path(name).parts:
                continue
            target = dest / name
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            target.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH if mode else 0o644)


def install_node(files: dict[Artifact, Path], home: Path) -> Path:
    """Build an OpenSearch home at ``home`` from downloaded artifacts (no-op if already installed).

    Args:
        files: artifact -> local file, as returned by ``fetch_artifacts``.
        home: target folder; its parent is created if needed.
    Returns:
        ``home``.
    Raises:
        ValueError: ``files`` has no core zip, or ``home`` exists but is not a shopsearch install.
    Example:
        >>> install_node(fetch_artifacts(node_artifacts()), Path("/tmp/os"))  # doctest: +SKIP
    """
    if is_installed(home):
        return home
    if home.exists() and any(home.iterdir()):
        raise ValueError(f"home={str(home)!r} exists but is not a shopsearch OpenSearch install; "
                         f"remove it or set SHOPSEARCH_OPENSEARCH_HOME elsewhere")
    core = [path for art, path in files.items() if art.role == "core"]
    if len(core) != 1:
        raise ValueError(f"files must contain exactly one core zip, got {len(core)}")
    t0 = time.monotonic()
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = home.parent / f".{home.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    _extract(core[0], tmp, strip_top=True)
    for art, path in files.items():
        kind, _, name = art.role.partition(":")
        if kind == "module":
            folder = tmp / "modules" / name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, folder / path.name)
            (folder / "plugin-descriptor.properties").write_text(plugin_descriptor(name))
            if name == "lang-painless":
                (folder / "plugin-security.policy").write_text(PAINLESS_POLICY)
        elif kind == "plugin":
            _extract(path, tmp / "plugins" / name, strip_top=False)
    (tmp / "config" / "opensearch.yml").write_text(opensearch_yml())
    for sub in ("data", "logs", "run"):
        (tmp / sub).mkdir(exist_ok=True)
    (tmp / MARKER).write_text(json.dumps({
        "opensearch": OPENSEARCH_VERSION,
        "artifacts": sorted(path.name for path in files.values()),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }, indent=2) + "\n")
    if home.exists():
        home.rmdir()  # empty (checked above)
    tmp.rename(home)
    log.info("installed OpenSearch %s with %d modules/plugins into %s in %.1f s", OPENSEARCH_VERSION,
             len({a.role for a in files if a.role != "core"}), home, time.monotonic() - t0)
    return home

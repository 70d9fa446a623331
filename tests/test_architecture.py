"""The layering rule: shopsearch (settings, shared vocabulary) < indexer < plugin < reranker < api."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Package -> its folder and rank; a module may import only packages of its own rank or lower.
LAYERS = {"shopsearch": ("shopsearch", 0), "shopsearch.indexer": ("indexer", 1), "shopsearch.plugin": ("plugin", 2),
          "shopsearch.reranker": ("reranker", 3), "shopsearch.api": ("api", 4)}


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and ".".join(parts[:2]) in LAYERS:
        return ".".join(parts[:2])
    return "shopsearch"


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every shopsearch import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "shopsearch"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, package + ("." + node.module if node.module else "")))
            elif node.module and node.module.split(".")[0] == "shopsearch":
                found.append((node.lineno, node.module))
    return found


def test_no_lower_package_imports_a_higher_one():
    violations = []
    for package, (folder, rank) in LAYERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, module in _imports(path, package):
                target = _package_of(module)
                if LAYERS[target][1] > rank:
                    violations.append(f"{path.relative_to(REPO)}:{line} imports {module} ({package} < {target})")
    assert violations == [], "\n".join(violations)


def test_the_layering_check_sees_relative_and_absolute_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from shopsearch.api.app import create_app\nfrom .embedder import BiEncoder\nimport numpy\n")
    assert _imports(probe, "shopsearch.indexer") == [(1, "shopsearch.api.app"), (2, "shopsearch.indexer.embedder")]
    assert _package_of("shopsearch.api.app") == "shopsearch.api" and _package_of("shopsearch.settings") == "shopsearch"

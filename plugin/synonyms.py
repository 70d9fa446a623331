"""Search-time synonyms from a file a merchandiser edits, applied by query expansion: no reindex, both engines alike.

The file is in Solr's synonym format (plugin/config/synonyms.txt is the packaged example): ``a, b, c`` makes the
phrases equivalent, ``a, b => c`` rewrites a and b to c (one way), ``#`` starts a comment. Each index has its own
file, ``<merchandising_dir>/<index>.synonyms.txt`` (``<index>`` is the name the API searches, usually the alias);
without one, the packaged default (``[analysis] synonyms_file`` of plugin/config/index.toml) applies. The file is
read again when it changes (modification time and size; a stat per search): a bad file is logged with its line
number and the last good rules stay in force.

Why query expansion and not an updateable ``synonym_graph`` analyzer: OpenSearch reloads a search analyzer's
synonyms only through ``POST /_plugins/_refresh_search_analyzers`` of the index-management plugin (Elasticsearch's
``_reload_search_analyzers`` is X-Pack). The local node (plugin/localnode_install.py) is assembled from the core
with the analysis-common, lang-painless and transport-netty4 modules and the k-NN and neural-search plugins: it
answers that endpoint with "no handler found" (checked on 2.19.1), and a cluster we do not run may lack the plugin
too. Without it, new synonyms reach an analyzer only by closing and reopening the index (searches fail meanwhile)
or by a reindex. So synonyms are not in the mapping (plugin/config/index.json) and shopsearch expands the query:

- :class:`~.text_analysis.SynonymMap` finds the rules' inputs in the query's tokens (longest match first, before
  stop words and stemming, as the ``synonym_graph`` filter did);
- :func:`~.text_analysis.analyze_query` turns the query into clauses; a synonym's alternatives form one clause,
  each alternative scored on its own (a single term with the profile's fuzziness, a phrase exactly) and summed;
- OpenSearch receives that as a best_fields ``dis_max`` of per-field bool queries
  (:func:`~.opensearch_queries.lexical_query`); the embedded engine scores the same clauses
  (:func:`~.embedded_bm25.score_field`). A query no rule fires in is sent as before (``multi_match``).

The map travels with each BM25 leg (``BM25Leg.synonyms``), which :class:`~.hybrid.HybridSearcher` fills from
:class:`SynonymFiles`. Indices built before synonyms left the mapping still expand the synonyms they were built
with for queries no current rule fires in; one full rebuild (``shopsearch index --full``) drops them.
"""

from __future__ import annotations

from pathlib import Path

from shopsearch.config_files import IndexFiles, read_text

from .text_analysis import SynonymMap

SUFFIX = ".synonyms.txt"


def load_synonyms(path: str | Path) -> SynonymMap:
    """Read a Solr-format synonyms file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a rule with an empty side or two "=>"; the message names the file and the line.

    >>> len(load_synonyms(Path(__file__).parent / "config" / "synonyms.txt")) > 0
    True
    """
    text = read_text(path, encoding="utf-8-sig")  # a BOM (Notepad, Excel) must not hide a first "#" line
    try:
        return SynonymMap.from_lines(text.splitlines())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class SynonymFiles:
    """Each index's synonyms: ``<folder>/<index>.synonyms.txt``, else the ``default`` rules.

    Args:
        folder: the merchandising folder (the ``merchandising_dir`` setting); None: only the default.
        default: Solr-format lines used for an index without a file (the packaged synonyms).

    >>> SynonymFiles(None, ["couch, sofa"]).get("products").fires("couch")
    True
    """

    def __init__(self, folder: str | Path | None, default: tuple[str, ...] | list[str] = ()):
        self.default = SynonymMap.from_lines(default)
        self.files: IndexFiles[SynonymMap | None] = IndexFiles(folder, SUFFIX, load_synonyms, None)

    def path(self, index: str) -> Path | None:
        """Where ``index``'s synonyms file is (whether or not it exists); None without a folder."""
        return self.files.path(index)

    def get(self, index: str) -> SynonymMap:
        """The synonyms in force for ``index`` (a stat of its file; reloaded when it changed)."""
        found = self.files.get(index)
        return self.default if found is None else found

"""shopsearch: e-commerce search. The code lives in indexer/, plugin/, reranker/ and api/ (installed as shopsearch.*)."""

__version__ = "0.1.0"

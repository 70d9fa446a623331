"""shopsearch.indexer"""

"""shopsearch.reranker"""

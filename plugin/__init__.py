"""shopsearch.plugin"""

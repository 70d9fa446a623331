"""shopsearch.api"""

"""
Tests for L{dnstls.testing}.
"""

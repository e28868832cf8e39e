"""
Tests for L{dnstls.resolver}.
"""

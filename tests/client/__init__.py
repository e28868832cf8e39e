"""
Tests for L{dnstls.client}.
"""

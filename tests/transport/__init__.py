"""
Tests for L{dnstls.transport}.
"""

"""
Tests for L{dnstls.zones}.
"""

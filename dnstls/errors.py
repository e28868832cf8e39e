# -*- test-case-name: tests.zones.test_zonefile -*-
"""
The exceptions dnstls raises; every one derives from L{DNSTLSError}.
"""

from __future__ import annotations


class DNSTLSError(Exception):
    """
    The root of every error dnstls raises on purpose.
    """


class StartupError(DNSTLSError):
    """
    The server cannot start: a bad option, an unreadable file, an address
    that cannot be bound.  The message is one line meant for an operator.
    """


class ZoneError(StartupError):
    """
    A zone file cannot be served: a syntax error or a failed check.  The
    message names the file, the line where it is known, and the reason.
    """


def reason(error: BaseException) -> str:
    """
    One line saying why C{error} happened, without its class name: an
    C{OSError}'s C{strerror} in lower case, else the first line of its
    message, else of its class's docstring.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = str(error).strip() or error.__class__.__doc__ or error.__class__.__name__
    return text.strip().splitlines()[0]

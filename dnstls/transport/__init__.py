"""
The transports: UDP and stream protocols with their framing and limits, the
fast answer path, the TO-bit upgrade of TCP/53, the TLS policy and the DNS
over TLS record layer, listening sockets and worker processes.  Every
transport hands its messages to the one L{dnstls.handler.Handler}.
"""

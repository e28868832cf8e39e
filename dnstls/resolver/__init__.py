"""
The resolver, for names outside our zones: the recursion front door, the
answer cache, iteration from the root hints with its name-server queries and
infrastructure cache, and forwarding over UDP, TCP and DNS over TLS.
"""

"""
The resolver, for names outside our zones: the recursion front door, the
answer cache, iteration from the root hints with its name-server queries and
infrastructure cache, and forwarding over UDP, TCP and DNS over TLS.

  - L{dnstls.resolver.recursion}: the front door the handler asks (who may
    recurse, the cache, the source of answers);
  - L{dnstls.resolver.cache}: the cache of answers;
  - L{dnstls.resolver.forward}, L{dnstls.resolver.forward_tls},
    L{dnstls.resolver.tlsupstream}: forwarding, and its DNS-over-TLS
    upstreams;
  - L{dnstls.resolver.iterate}: iteration, with L{dnstls.resolver.question},
    L{dnstls.resolver.selection}, L{dnstls.resolver.classify},
    L{dnstls.resolver.delegation}, L{dnstls.resolver.priming},
    L{dnstls.resolver.nsquery}, L{dnstls.resolver.infracache} and
    L{dnstls.resolver.roothints};
  - L{dnstls.resolver.exchange}, L{dnstls.resolver.udpsocket}: one query's
    exchange with an upstream server, for forwarding and iteration alike.
"""

"""
dnsbench: the dnstls benchmark harness behind C{bench/run}.  It starts dnstls
and its peers (Knot, Unbound, Twisted Names, dnsdist) on loopback, checks that
they answer alike, loads each with dnsperf, measures the memory of idle DoT
connections and writes BENCHMARKS.md; L{dnsbench.cli.main} is the command, and
each module holds one step of it.
"""

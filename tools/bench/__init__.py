"""``linemq bench``: throughput, latency, memory and restart time of linemq, and of peers.

The load generator speaks each system's wire protocol through a thin codec of its own
(``linemq_driver``, ``redis_driver``, ``nats_driver``, all in one style), so a ratio between
two systems compares the brokers rather than their client libraries.
"""

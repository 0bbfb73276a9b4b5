"""The engine: the commit tick, ids, dedup, durability waits and retention, below the I/O faces."""

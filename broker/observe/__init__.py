"""What the broker exposes about itself: counters, latency histograms, STATS snapshots."""

"""Who gets which message when: fanout, consumer groups, timers, retries, dead letters."""

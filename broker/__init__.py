"""linemq: a durable message broker speaking a plain-text line protocol."""

__version__ = "0.1.0"

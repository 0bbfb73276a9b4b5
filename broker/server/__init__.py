"""Networking and wiring: connections move bytes, handlers call storage and delivery."""

"""The operations surface behind ``--http-port``: metrics, probes, JSON API, dashboard."""

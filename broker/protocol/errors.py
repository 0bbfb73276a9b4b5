"""Protocol errors carry the exact text of the ``ERR`` line the client will see."""


class ProtocolError(Exception):
    """A line the broker cannot act on; ``reason`` becomes ``ERR <reason>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

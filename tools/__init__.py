"""Tools that drive a broker from outside: ``linemq bench`` and ``linemq torture``.

Kept apart from the broker so ``linemq serve`` never imports them (or the client they use).
"""

"""The optional C sealer; everything else is in pyproject.toml.

``optional=True``: where it cannot be compiled the package still installs, and
``broker.storage.checksum`` uses its pure-Python code, which writes the same bytes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("broker.storage._seal", ["broker/storage/_seal.c"], optional=True),
    ]
)

"""Where the installed ``linemq`` package's parts live, and the optional C sealer.

The repository keeps ``broker/``, ``clients/`` and ``tools/`` at its top; installed, they
are ``linemq.broker``, ``linemq.clients`` and ``linemq.tools``, so nothing named ``broker``
or ``clients`` lands at the top of site-packages. Everything else is in pyproject.toml.

The C sealer is ``optional=True``: where it cannot be compiled the package still installs,
and ``linemq.broker.storage.checksum`` uses its pure-Python code, which writes the same bytes.
"""

from setuptools import Extension, find_packages, setup

FOLDERS = {"linemq.broker": "broker", "linemq.clients": "clients", "linemq.tools": "tools"}

packages = ["linemq"]
for name, folder in FOLDERS.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(folder))]

setup(
    package_dir={"linemq": "linemq", **FOLDERS},
    packages=packages,
    ext_modules=[
        Extension("linemq.broker.storage._seal", ["broker/storage/_seal.c"], optional=True),
    ],
)

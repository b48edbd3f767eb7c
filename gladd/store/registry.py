"""Every store gladd knows, by URL scheme: what the factory picks from, what the resilience
classifier learns the drivers' transient errors from, and what the contract suite runs on.

Adding a store: a package beside ``sqlite/`` and ``postgres/`` whose ``__init__`` declares
its :class:`~gladd.store.base.Backend` (without importing its driver), its entry in
:data:`BACKENDS`, and its fixture maker in ``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gladd.errors import ConfigError
from gladd.resilience.classify import register_transient
from gladd.store import memory, postgres, sqlite
from gladd.store.base import Backend
from gladd.store.urls import mask_url

BACKENDS: tuple[Backend, ...] = (sqlite.BACKEND, postgres.BACKEND, memory.BACKEND)
"""In the order messages list their URL forms."""

for _backend in BACKENDS:
    register_transient(_backend.transient)

_HINT = "use " + ", ".join(backend.form for backend in BACKENDS[:-1]) + f" or {BACKENDS[-1].form}"


def backend_for(url: str) -> Backend:
    """The store that takes ``url``; ConfigError (password masked) for one none takes."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    for backend in BACKENDS:
        if scheme in backend.schemes:
            return backend
    shown = mask_url(url)
    if not scheme:
        raise ConfigError(f"store URL {shown!r} has no scheme: {_HINT}")
    raise ConfigError(f"store URL {shown!r} has an unsupported scheme {scheme!r}: {_HINT}")

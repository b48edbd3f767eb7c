"""The named queries of ``sql/queries.sql``, loaded once (see :mod:`gladd.store.sqlfiles`)."""

from gladd.store.sqlfiles import load_queries

Q = load_queries("gladd.store.sqlite")

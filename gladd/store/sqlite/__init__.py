"""The embedded default store: one SQLite file (:mod:`gladd.store.sqlite.store`)."""

"""The PostgreSQL store, shared by many nodes (:mod:`gladd.store.postgres.store`)."""

"""Live reloads of ``policies.toml``: the pipeline (:mod:`.reloader`), the diff it reports
(:mod:`.diff`) and the file watcher that triggers it (:mod:`.watch`).

Deliberately empty of imports, so importing one part does not import them all.
"""

"""The durable task executor: a few small services (:mod:`.runner` composes them), the task
kinds it runs (:mod:`.kinds`), its pure decisions (:mod:`.decide`) and the task service the
admin API and the CLI enqueue through (:mod:`.service`).

Deliberately empty of imports, so importing one part does not import them all.
"""

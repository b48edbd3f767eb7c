"""The web console at ``/ui`` on the admin address (issue 14, part 2): server-rendered
pages (Starlette + Jinja2), live by htmx polling, actions as form POSTs.

A screen is a template in ``templates/`` and a view function in :mod:`.views` that reads
what it shows; :mod:`.actions` holds the POSTs. Safety (login cookie, cross-site refusal,
read-only) is the admin address's, in :mod:`gladd.admin` — the console only hides what
read-only mode refuses anyway.
"""

"""The admin API the daemon serves: its Starlette app, its task routes and its server."""

"""The admin API the daemon serves, and the client the command line talks to it with."""

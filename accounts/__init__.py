"""The account API: interface and errors (base), HTTP client (client), in-process twin (local),
sandbox service (sandbox/). The ``accounts`` config section is ``settings.AccountsConfig``."""

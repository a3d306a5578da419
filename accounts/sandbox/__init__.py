"""The account API sandbox: the contract implemented over SQLite (service), served over HTTP (server)."""

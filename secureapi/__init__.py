"""SecureAPI: a secure REST API (Flask, MariaDB, TOTP, JWT)."""

__version__ = "0.3.0"

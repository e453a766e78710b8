"""Configuration read from the environment, with safe typed defaults.

Nothing secret has a default here: without SECRET_KEY the application generates a
random key once and keeps it in the instance folder (see app.load_secret_key).
"""

import os

from MySQLdb.constants import CLIENT


def env_int(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or None

    MYSQL_HOST = os.environ.get("MYSQL_HOST", "localhost")
    MYSQL_PORT = env_int("MYSQL_PORT", 3306)
    MYSQL_USER = os.environ.get("MYSQL_USER", "root")
    MYSQL_PASSWORD = os.environ.get("MYSQL_PASSWORD", "")
    MYSQL_DB = os.environ.get("MYSQL_DB", "secure_api")
    MYSQL_CURSORCLASS = "DictCursor"
    MYSQL_CHARSET = "utf8mb4"
    # Strict mode: MySQL refuses bad values instead of silently truncating them.
    MYSQL_SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"
    MYSQL_CONNECT_TIMEOUT = env_int("MYSQL_CONNECT_TIMEOUT", 5)
    # FOUND_ROWS: an UPDATE reports the rows it matched, so "no such product" is
    # told apart from "no value changed".
    MYSQL_CUSTOM_OPTIONS = {"client_flag": CLIENT.FOUND_ROWS}

    JWT_EXPIRES_SECONDS = env_int("JWT_EXPIRES_SECONDS", 600)
    BCRYPT_ROUNDS = env_int("BCRYPT_ROUNDS", 12)
    TOTP_ISSUER = os.environ.get("TOTP_ISSUER", "SecureAPI")

    MAX_CONTENT_LENGTH = 1024 * 1024

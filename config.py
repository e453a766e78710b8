"""Configuration read from the environment, with safe typed defaults.

Nothing secret has a default here: without SECRET_KEY the application generates a
random key once and keeps it in the instance folder (load_instance_secret). The clock that
lockout and one-time codes read is a setting too, so tests can move it.
"""

import os
import secrets
import time

from flask import current_app


def env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, not {value!r}") from None


def env_bool(name, default):
    value = os.environ.get(name, "").strip().lower()
    return default if value == "" else value in ("1", "true", "yes", "on")


def load_instance_secret(instance_path, name, generate=lambda: secrets.token_urlsafe(48)):
    """Return the key kept in instance/<name>, creating it on first use."""
    path = os.path.join(instance_path, name)
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        temporary = f"{path}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(generate())
        # link() is atomic and never overwrites: concurrent workers all end up with one key.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path) as f:
        return f.read().strip()


def now():
    """Unix time; tests move it through the CLOCK setting instead of sleeping."""
    return current_app.config["CLOCK"]()


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or None

    MYSQL_HOST = os.environ.get("MYSQL_HOST", "localhost")
    MYSQL_PORT = env_int("MYSQL_PORT", 3306)
    MYSQL_USER = os.environ.get("MYSQL_USER", "root")
    MYSQL_PASSWORD = os.environ.get("MYSQL_PASSWORD", "")
    MYSQL_DB = os.environ.get("MYSQL_DB", "secure_api")
    MYSQL_CURSORCLASS = "DictCursor"
    MYSQL_CHARSET = "utf8mb4"
    MYSQL_AUTOCOMMIT = True  # several-statement writes use db.in_transaction()
    # Strict mode: MySQL refuses bad values instead of silently truncating them.
    MYSQL_SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"
    MYSQL_CONNECT_TIMEOUT = env_int("MYSQL_CONNECT_TIMEOUT", 5)
    MYSQL_READ_TIMEOUT = env_int("MYSQL_READ_TIMEOUT", 5)
    # Session settings every connection makes, one SET statement: on a Galera cluster
    # "SET SESSION wsrep_sync_wait = 1" makes each read see every write committed before it.
    MYSQL_INIT_COMMAND = os.environ.get("MYSQL_INIT_COMMAND") or None
    # A kept-open connection is replaced after this many seconds (0: never), so that behind
    # a load balancer the app comes back to a node that was out.
    MYSQL_CONNECTION_MAX_AGE = env_int("MYSQL_CONNECTION_MAX_AGE", 300)
    # TLS to a remote database: the CA that signed the server's certificate (the server's
    # name or IP is verified against it), and a client certificate if the server wants one.
    MYSQL_SSL_CA = os.environ.get("MYSQL_SSL_CA") or None
    MYSQL_SSL_CERT = os.environ.get("MYSQL_SSL_CERT") or None
    MYSQL_SSL_KEY = os.environ.get("MYSQL_SSL_KEY") or None

    # open: anyone may register, with REGISTRATION_ROLE; closed: only create-user adds users.
    REGISTRATION = os.environ.get("REGISTRATION", "open")
    REGISTRATION_ROLE = os.environ.get("REGISTRATION_ROLE", "editor")

    JWT_EXPIRES_SECONDS = env_int("JWT_EXPIRES_SECONDS", 600)
    # Sessions, one per login (ASVS 5.0 V7): how many one user may hold (a login past it ends
    # their least recently used; 1 gives one session per user), how long one may go unused
    # before a refresh is refused (7.3.1), and its absolute age (7.3.2). NIST SP 800-63B's
    # AAL2 bounds: 30 minutes idle, 12 hours in all.
    SESSIONS_PER_USER = env_int("SESSIONS_PER_USER", 10)
    SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 1800)
    SESSION_MAX_SECONDS = env_int("SESSION_MAX_SECONDS", 43200)
    # Personal access tokens (scripts, CI) one user may hold unexpired at once.
    TOKENS_PER_USER = env_int("TOKENS_PER_USER", 20)
    BCRYPT_ROUNDS = env_int("BCRYPT_ROUNDS", 12)
    TOTP_ISSUER = os.environ.get("TOTP_ISSUER", "SecureAPI")
    # Time steps accepted either side of the current one: 1 (90 s in all) forgives a phone
    # whose clock is a little off; 0 accepts only the current 30 s.
    TOTP_VALID_WINDOW = env_int("TOTP_VALID_WINDOW", 1)
    # How long after registration or a 2FA reset the QR code is served (unless a login
    # closes it sooner).
    ENROLMENT_WINDOW_SECONDS = env_int("ENROLMENT_WINDOW_SECONDS", 900)
    # Fernet key(s) for TOTP secrets at rest, comma-separated, newest first; generated into
    # instance/totp_encryption_key when unset.
    TOTP_ENCRYPTION_KEY = os.environ.get("TOTP_ENCRYPTION_KEY") or None
    # HMAC key of the recovery-code digests (at least 32 bytes); generated into
    # instance/recovery_code_key when unset. Losing it voids every recovery code.
    RECOVERY_CODE_KEY = os.environ.get("RECOVERY_CODE_KEY") or None

    # Per-account lockout, shared by every worker and instance through the database.
    LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
    LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 30)
    LOGIN_LOCKOUT_MAX_SECONDS = env_int("LOGIN_LOCKOUT_MAX_SECONDS", 900)
    # Consecutive failures from all clients after which the account stays locked until an
    # admin unlocks it (the ceiling of NIST SP 800-63B).
    LOGIN_HARD_LOCK_FAILURES = env_int("LOGIN_HARD_LOCK_FAILURES", 100)

    # Per-client rate limits (Flask-Limiter). A redis:// URI shares them across workers.
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_LOGIN = os.environ.get("RATELIMIT_LOGIN", "10 per minute")
    RATELIMIT_REGISTER = os.environ.get("RATELIMIT_REGISTER", "5 per minute")
    RATELIMIT_QRCODE = os.environ.get("RATELIMIT_QRCODE", "10 per minute")
    # POST /token/refresh, per client address: a client refreshes once per access token.
    RATELIMIT_REFRESH = os.environ.get("RATELIMIT_REFRESH", "30 per minute")
    # Product creates, changes and deletes, per user across all their clients.
    RATELIMIT_WRITES = os.environ.get("RATELIMIT_WRITES", "120 per minute")
    # Off: they add Retry-After to every response; rate_limits.handle_rate_limited sets it
    # on the 429s, the only place it belongs (with 503).
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "secureapi")
    # If the limits store is down, limit per process rather than fail every request.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # How many proxies in front of the app append to X-Forwarded-For; 0 ignores the header.
    PROXY_FIX_X_FOR = env_int("PROXY_FIX_X_FOR", 0)

    MAX_CONTENT_LENGTH = 1024 * 1024
    # How long the answer to a create with an Idempotency-Key is kept for a retry.
    IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 86400)
    # Strict-Transport-Security max-age; set it (e.g. 31536000) only when served over HTTPS.
    HSTS_SECONDS = env_int("HSTS_SECONDS", 0)
    # RFC 9068 access tokens: who issues them and for whom; checked on every request.
    JWT_ISSUER = os.environ.get("JWT_ISSUER", "SecureAPI")
    JWT_AUDIENCE = os.environ.get("JWT_AUDIENCE", "SecureAPI")
    CLOCK = staticmethod(time.time)

    # GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (at least 32
    # characters); unset, there are no metrics and /metrics is a 404.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    # Lockout rows that no attempt has touched for this long are deleted by `flask purge`
    # and, a batch at a time, by every 100th attempt (lockout.purge_stale_rows).
    LOGIN_FAILURES_TTL_SECONDS = env_int("LOGIN_FAILURES_TTL_SECONDS", 86400)

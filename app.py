"""SecureAPI: register, enrol TOTP, log in for a JWT, manage a shared product inventory.

The application factory and nothing else: it reads the config, binds the extensions and
registers every blueprint, error handler, request hook and CLI command. The README's code
map says which module holds what.
"""

import os

import MySQLdb
from flask import Flask
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, load_instance_secret
from secureapi.core import metrics
from secureapi.core.refusals import Refused
from secureapi.core.validation import IdConverter
from secureapi.data import words
from secureapi.data.database import init_db_command, mysql
from secureapi.routes import auth, docs, me, operations, products, users
from secureapi.security.audit import init_audit_log
from secureapi.security.passwords import dummy_password_hash
from secureapi.security.rate_limits import limiter, skip_unlimited_routes
from secureapi.security.tokens import ROLES, NoCookieSessions
from secureapi.security.two_factor import recovery_code_key, rotate_totp_keys_command, totp_fernet
from secureapi.web import errors
from secureapi.web.json_provider import FastJSONProvider


def create_app(test_config=None):
    # No /static route: the docs page's files are served, versioned, by docs.py.
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.json = FastJSONProvider(app)
    app.json.ensure_ascii = False  # UTF-8 JSON: "ü", not "\\u00fc" (six bytes for one)
    app.session_interface = NoCookieSessions()
    app.config.from_object(Config)
    if test_config:
        app.config.update(test_config)

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = load_instance_secret(app.instance_path, "secret_key")
    if len(app.config["SECRET_KEY"].encode()) < 32:
        raise RuntimeError("SECRET_KEY must be at least 32 bytes long")
    if app.config["REGISTRATION"] not in ("open", "closed"):
        raise RuntimeError("REGISTRATION must be open or closed")
    if app.config["REGISTRATION_ROLE"] not in ROLES:
        raise RuntimeError("REGISTRATION_ROLE must be viewer, editor or admin")
    if app.config["TOTP_VALID_WINDOW"] not in (0, 1):
        raise RuntimeError("TOTP_VALID_WINDOW must be 0 or 1")
    if app.config["METRICS_TOKEN"] and len(app.config["METRICS_TOKEN"]) < 32:
        raise RuntimeError("METRICS_TOKEN must be at least 32 characters long")
    if app.config["LOGIN_FAILURES_TTL_SECONDS"] < 1:
        raise RuntimeError("LOGIN_FAILURES_TTL_SECONDS must be at least 1")
    for setting in (
        "SESSIONS_PER_USER",
        "SESSION_IDLE_SECONDS",
        "SESSION_MAX_SECONDS",
        "TOKENS_PER_USER",
    ):
        if app.config[setting] < 1:
            raise RuntimeError(f"{setting} must be at least 1")
    metrics.init_app(app)  # first: its timer starts before every other hook
    app.extensions["totp_fernet"] = totp_fernet(app)
    app.extensions["recovery_code_key"] = recovery_code_key(app)
    app.config["DUMMY_PASSWORD_HASH"] = dummy_password_hash(app.config["BCRYPT_ROUNDS"])
    if app.config["PROXY_FIX_X_FOR"]:
        # Trust X-Forwarded-For only as far as the operator says proxies add to it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    init_audit_log(app)

    app.url_map.converters["id"] = IdConverter
    # "//" would be a 308 redirect built from the client's Host header: a 404 instead.
    app.url_map.merge_slashes = False
    mysql.init_app(app)
    limiter.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(me.bp)
    app.register_blueprint(products.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(operations.bp)
    skip_unlimited_routes(app)  # after every route: the limiter skips the others

    app.register_error_handler(HTTPException, errors.handle_http_error)
    app.register_error_handler(RateLimitExceeded, errors.handle_rate_limited)
    app.register_error_handler(Refused, errors.handle_refused)
    app.register_error_handler(MySQLdb.OperationalError, errors.handle_database_unavailable)
    app.register_error_handler(Exception, errors.handle_unexpected_error)
    app.before_request(errors.assign_request_id)
    app.before_request(errors.refuse_oversized_body)
    app.after_request(errors.add_security_headers)

    app.cli.add_command(init_db_command)
    app.cli.add_command(rotate_totp_keys_command)
    app.cli.add_command(users.create_user_command)
    app.cli.add_command(users.set_role_command)
    app.cli.add_command(users.unlock_command)
    app.cli.add_command(operations.purge_command)
    app.cli.add_command(words.reindex_words_command)
    return app


if __name__ == "__main__":
    # Development server only; debug comes from FLASK_DEBUG=1, never from source.
    create_app().run(debug=os.environ.get("FLASK_DEBUG") == "1")

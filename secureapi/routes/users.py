"""Blueprint for admins managing users (list, show, change role or disabled, delete, reset
2FA), and the CLI commands create-user and set-role for the operator at the terminal."""

import io
import json
import sys

import click
import qrcode
from flask import Blueprint, current_app, g
from flask.cli import with_appcontext

from secureapi.core.refusals import Conflict, NotFound, Refused, ValidationError
from secureapi.core.validation import json_object, refuse_unknown_fields
from secureapi.data.database import in_transaction, query
from secureapi.routes.pagination import page, page_parameters
from secureapi.security.access_tokens import revoke_token, user_tokens
from secureapi.security.accounts import (
    account_json,
    create_account,
    delete_account,
    lock_enabled_admins,
    refuse_last_admin,
    validate_role,
    validate_username,
)
from secureapi.security.audit import audit
from secureapi.security.lockout import unlock
from secureapi.security.passwords import validate_new_password
from secureapi.security.sessions import audit_ended, end_user_sessions, user_sessions
from secureapi.security.tokens import token_required
from secureapi.security.two_factor import otpauth_uri, reset_secret

bp = Blueprint("users", __name__)

# A user with their hard lock (lockout.py), if any.
SELECT_USERS = (
    "SELECT users.id, users.username, role, disabled, created_at, twofa_confirmed_at,"
    " COALESCE(login_failures.locked, FALSE) AS locked FROM users"
    " LEFT JOIN login_failures ON login_failures.username = users.username"
)


def validate_user_changes(data):
    refuse_unknown_fields(data, ("role", "disabled", "locked"))
    if not data:
        raise ValidationError("Give at least one of: role, disabled, locked.")
    changes = {}
    if "role" in data:
        changes["role"] = validate_role(data["role"])
    if "disabled" in data:
        if not isinstance(data["disabled"], bool):
            raise ValidationError("'disabled' must be true or false.")
        changes["disabled"] = data["disabled"]
    if "locked" in data and data["locked"] is not False:
        raise ValidationError("'locked' can only be set to false (unlock); disable to lock out.")
    return changes | ({"locked": False} if "locked" in data else {})


def locked_user(cursor, user_id):
    """The user's row, locked for the transaction; NotFound if there is none."""
    # The enabled admins' rows first, then the user's: every admin change takes its locks in
    # this order, so two racing changes wait for each other instead of deadlocking.
    lock_enabled_admins(cursor)
    cursor.execute(f"{SELECT_USERS} WHERE users.id = %s FOR UPDATE", (user_id,))  # noqa: S608
    user = cursor.fetchone()
    if user is None:
        raise NotFound("No user has that id.")
    return user


@bp.get("/users")
@token_required("admin")
def list_users():
    limit, after = page_parameters()
    rows = query(
        f"{SELECT_USERS} WHERE users.id > %s ORDER BY users.id LIMIT %s",  # noqa: S608
        (after, limit + 1),
    )
    return page(rows, limit, account_json)


@bp.get("/users/<id:user_id>")
@token_required("admin")
def get_user(user_id):
    rows = query(f"{SELECT_USERS} WHERE users.id = %s", (user_id,))  # noqa: S608
    if not rows:
        raise NotFound("No user has that id.")
    return account_json(rows[0])


@bp.patch("/users/<id:user_id>")
@token_required("admin")
def update_user(user_id):
    changes = validate_user_changes(json_object())

    def update(cursor):
        user = locked_user(cursor, user_id)
        if changes.get("role", "admin") != "admin" or changes.get("disabled"):
            refuse_last_admin(cursor, user)
        if "locked" in changes:
            unlock(cursor, user["username"])
        cursor.execute(
            "UPDATE users SET role = %s, disabled = %s WHERE id = %s",
            (changes.get("role", user["role"]), changes.get("disabled", user["disabled"]), user_id),
        )
        # Disabling ends every session at once; enabling brings none back.
        ended = end_user_sessions(cursor, user_id) if changes.get("disabled") else []
        return user | changes, ended

    user, ended = in_transaction(update)
    audit("user_updated", g.user["username"], user=user["username"], **changes)
    audit_ended(user["username"], ended, "disabled")
    return {"message": "User updated", "user": account_json(user)}


@bp.delete("/users/<id:user_id>")
@token_required("admin")
def delete_user(user_id):
    # December review: an admin's token alone deleted the admin's own account; DELETE /me
    # asks for the password and a second factor first.
    if user_id == g.user["id"]:
        raise Conflict("Delete your own account with DELETE /me (password and second factor).")

    def delete(cursor):
        user = locked_user(cursor, user_id)
        refuse_last_admin(cursor, user)
        return user, delete_account(cursor, user)

    user, ended = in_transaction(delete)
    audit("account_deleted", g.user["username"], user=user["username"])
    audit_ended(user["username"], ended, "account_deleted")
    return {"message": "User deleted"}


@bp.post("/users/<id:user_id>/2fa/reset")
@token_required("admin")
def reset_user_two_factor(user_id):
    """For a user who lost both phone and recovery codes: the QR code opens again to their
    own password, and nobody, the admin included, sees the new secret."""
    if user_id == g.user["id"]:
        raise Conflict("Reset your own two-factor with POST /2fa/reset.")

    def reset(cursor):
        user = locked_user(cursor, user_id)
        reset_secret(cursor, user_id)
        cursor.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
        return user, end_user_sessions(cursor, user_id)

    user, ended = in_transaction(reset)
    audit("twofa_reset", g.user["username"], user=user["username"])
    audit_ended(user["username"], ended, "two_factor_reset")
    return {
        "message": "Two-factor authentication reset; the user fetches the new QR code with"
        " their password, then logs in with a code of it."
    }


@bp.get("/users/<id:user_id>/sessions")
@token_required("admin")
def list_user_sessions(user_id):
    if not query("SELECT id FROM users WHERE id = %s", (user_id,)):
        raise NotFound("No user has that id.")
    return current_app.json.response(user_sessions(user_id, g.user["session_id"]))


@bp.delete("/users/<id:user_id>/sessions")
@token_required("admin")
def end_user_sessions_route(user_id):
    """Sign the user out everywhere (the admin's own current session too, if it is theirs)."""

    def end(cursor):
        user = locked_user(cursor, user_id)
        return user, end_user_sessions(cursor, user_id)

    user, ended = in_transaction(end)
    audit("sessions_ended", g.user["username"], user=user["username"], count=len(ended))
    audit_ended(user["username"], ended, "ended_by_admin")
    return "", 204


@bp.get("/users/<id:user_id>/tokens")
@token_required("admin")
def list_user_tokens(user_id):
    if not query("SELECT id FROM users WHERE id = %s", (user_id,)):
        raise NotFound("No user has that id.")
    return current_app.json.response(user_tokens(user_id))


@bp.delete("/users/<id:user_id>/tokens/<token_id>")
@token_required("admin")
def revoke_user_token(user_id, token_id):
    if not revoke_token(user_id, token_id):
        raise NotFound("That user has no token with that id.")
    audit("token_revoked", g.user["username"], user_id=user_id, token_id=token_id)
    return "", 204


# --- CLI ------------------------------------------------------------------------------------


def read_password():
    """Hidden and asked twice at a terminal; else the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return sys.stdin.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise click.ClickException("The password must be UTF-8 text.") from None


@click.command("create-user")
@click.argument("username")
@click.option("--role", default="editor", show_default=True, help="viewer, editor or admin")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
@with_appcontext
def create_user_command(username, role, as_json):
    """Create a user (any role) and print what their authenticator and they need."""
    try:
        validate_username(username)
        validate_role(role)
        password = validate_new_password(read_password(), username=username)
        _, secret, codes = create_account(username, password, role)
    except Refused as refusal:  # the API's own rules and messages
        raise click.ClickException(refusal.message) from None
    uri = otpauth_uri(username, secret)
    audit("register", username, role=role, by="cli")
    if as_json:
        record = {"username": username, "role": role, "secret": secret, "otpauth_uri": uri}
        click.echo(json.dumps(record | {"recovery_codes": codes}))
        return
    picture = io.StringIO()
    code = qrcode.QRCode(border=2)
    code.add_data(uri)
    code.print_ascii(out=picture, invert=True)
    click.echo(f"Created {username} ({role}).\nTOTP secret: {secret}\notpauth URI: {uri}")
    click.echo(picture.getvalue())
    click.echo("Recovery codes (each works once; keep them offline):")
    click.echo("\n".join(codes))


@click.command("unlock")
@click.argument("username")
@with_appcontext
def unlock_command(username):
    """End a user's hard lock and every client's lockout of the account."""
    if not query("SELECT id FROM users WHERE username = %s", (username,)):
        raise click.ClickException(f"No user is called {username!r}.")
    in_transaction(unlock, username)
    audit("account_unlocked", None, user=username, by="cli")
    click.echo(f"{username} is unlocked.")


@click.command("set-role")
@click.argument("username")
@click.argument("role")
@with_appcontext
def set_role_command(username, role):
    """Give a user a role, e.g. when no admin can log in any more."""

    def set_role(cursor):
        lock_enabled_admins(cursor)  # first, as every admin change does
        cursor.execute(
            f"{SELECT_USERS} WHERE users.username = %s FOR UPDATE",  # noqa: S608
            (username,),
        )
        user = cursor.fetchone()
        if user is None:
            raise NotFound(f"No user is called {username!r}.")
        if role != "admin":
            refuse_last_admin(cursor, user)  # the rule PATCH /users/<id> applies
        cursor.execute("UPDATE users SET role = %s WHERE id = %s", (role, user["id"]))
        return user

    try:
        validate_role(role)
        user = in_transaction(set_role)
    except Refused as refusal:
        raise click.ClickException(refusal.message) from None
    audit("user_updated", None, user=user["username"], role=role, by="cli")
    click.echo(f"{user['username']} is now {role}.")

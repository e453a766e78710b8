"""Blueprint for the token holder's own account: who am I, change my password, my sessions
(list, end one, end all others), delete me. Credential changes need both factors again
(accounts.reauthenticated); ending a session does not."""

import functools

from flask import Blueprint, current_app, g

from secureapi.core.refusals import NotFound
from secureapi.core.validation import json_object, refuse_unknown_fields, require_text
from secureapi.data.database import execute, in_transaction, query, utc_iso
from secureapi.security.access_tokens import (
    create_token,
    revoke_token,
    user_tokens,
    validate_new_token,
)
from secureapi.security.accounts import delete_account, reauthenticated, refuse_last_admin
from secureapi.security.audit import audit
from secureapi.security.passwords import hash_password, validate_new_password
from secureapi.security.sessions import (
    SESSION_ID,
    audit_ended,
    end_user_sessions,
    user_sessions,
)
from secureapi.security.tokens import invalid_token, token_required

bp = Blueprint("me", __name__)


@bp.get("/me")
@token_required("viewer")
def get_me():
    rows = query(
        "SELECT id, username, role, created_at, twofa_confirmed_at,"
        " (SELECT COUNT(*) FROM recovery_codes WHERE user_id = users.id AND used_at IS NULL)"
        " AS recovery_codes_remaining FROM users WHERE id = %s",
        (g.user["id"],),
    )
    if not rows:  # deleted since the token check
        raise invalid_token("revoked", g.user["username"])
    row = rows[0]
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "created_at": utc_iso(row["created_at"]),
        "twofa_confirmed": row["twofa_confirmed_at"] is not None,
        "recovery_codes_remaining": row["recovery_codes_remaining"],
    }


@bp.post("/me/password")
@token_required("viewer")
def change_password():
    data = json_object()
    refuse_unknown_fields(data, ("current_password", "new_password", "otp", "recovery_code"))
    new_password = validate_new_password(
        require_text(data, "new_password"), "new_password", username=g.user["username"]
    )
    # Hashed only once both factors are proven, so a refused attempt costs one bcrypt, not
    # two; and only once, should a conflict run the transaction again.
    new_hash = functools.cache(lambda: hash_password(new_password))

    def change(cursor):
        cursor.execute("UPDATE users SET password = %s WHERE id = %s", (new_hash(), g.user["id"]))
        # ASVS 5.0 7.4.3: whoever else was logged in with the old password is out; this
        # session, which just proved both factors, goes on.
        return end_user_sessions(cursor, g.user["id"], keep=g.user["session_id"])

    ended = reauthenticated(data, "current_password", change)
    audit("password_changed", g.user["username"])
    audit_ended(g.user["username"], ended, "password_changed")
    return {"message": "Password changed; your other sessions have ended."}


@bp.get("/me/sessions")
@token_required("viewer")
def list_my_sessions():
    return current_app.json.response(user_sessions(g.user["id"], g.user["session_id"]))


@bp.delete("/me/sessions")
@token_required("viewer")
def end_my_other_sessions():
    """Sign out everywhere else: every session but this one ends."""
    ended = in_transaction(end_user_sessions, g.user["id"], g.user["session_id"])
    audit_ended(g.user["username"], ended, "ended_by_user")
    return "", 204


@bp.delete("/me/sessions/<session_id>")
@token_required("viewer")
def end_my_session(session_id):
    # Another user's session is answered as one that does not exist.
    ended = SESSION_ID.fullmatch(session_id) and execute(
        "DELETE FROM sessions WHERE id = %s AND user_id = %s", (session_id, g.user["id"])
    )
    if not ended:
        raise NotFound("You have no session with that id.")
    audit_ended(g.user["username"], [session_id], "ended_by_user")
    return "", 204


@bp.post("/me/tokens")
@token_required("viewer")
def create_my_token():
    """A personal access token for a script or CI, shown this once. It needs both factors
    again, as every other credential does."""
    data = json_object()
    fields = ("name", "scopes", "expires_in_days", "password", "otp", "recovery_code")
    refuse_unknown_fields(data, fields)
    name, scopes, days = validate_new_token(data)
    created = reauthenticated(
        data, "password", lambda cursor: create_token(cursor, g.user["id"], name, scopes, days)
    )
    audit("token_created", g.user["username"], token_id=created["id"], scopes=list(scopes))
    return created, 201


@bp.get("/me/tokens")
@token_required("viewer")
def list_my_tokens():
    return current_app.json.response(user_tokens(g.user["id"]))


@bp.delete("/me/tokens/<token_id>")
@token_required("viewer")
def revoke_my_token(token_id):
    # Another user's token is answered as one that does not exist.
    if not revoke_token(g.user["id"], token_id):
        raise NotFound("You have no token with that id.")
    audit("token_revoked", g.user["username"], token_id=token_id)
    return "", 204


@bp.delete("/me")
@token_required("viewer")
def delete_me():
    data = json_object()
    refuse_unknown_fields(data, ("password", "otp", "recovery_code"))

    def delete(cursor):
        refuse_last_admin(cursor, g.user)
        return delete_account(cursor, g.user)

    ended = reauthenticated(data, "password", delete, may_remove_admin=True)
    audit("account_deleted", g.user["username"], by=g.user["username"])
    audit_ended(g.user["username"], ended, "account_deleted")
    return {"message": "Account deleted."}

"""Blueprint for the token holder's own account: who am I, change my password, delete me.
Changes need both factors again (accounts.reauthenticated)."""

import functools

from flask import Blueprint, g

from secureapi.core.validation import json_object, refuse_unknown_fields, require_text
from secureapi.data.database import query, utc_iso
from secureapi.security.accounts import delete_account, reauthenticated, refuse_last_admin
from secureapi.security.audit import audit
from secureapi.security.passwords import hash_password, validate_new_password
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
        # Every token dies with the old password: whoever held one logs in again.
        cursor.execute(
            "UPDATE users SET password = %s, last_token = NULL WHERE id = %s",
            (new_hash(), g.user["id"]),
        )

    reauthenticated(data, "current_password", change)
    audit("password_changed", g.user["username"])
    return {"message": "Password changed; log in again with the new password."}


@bp.delete("/me")
@token_required("viewer")
def delete_me():
    data = json_object()
    refuse_unknown_fields(data, ("password", "otp", "recovery_code"))

    def delete(cursor):
        refuse_last_admin(cursor, g.user)
        delete_account(cursor, g.user)

    reauthenticated(data, "password", delete, may_remove_admin=True)
    audit("account_deleted", g.user["username"], by=g.user["username"])
    return {"message": "Account deleted."}

-- New password hashes are bcrypt of the password's SHA-256 (passwords of any length, no
-- truncation), marked with a prefix; v1's plain bcrypt hashes keep working and are
-- replaced at the user's next successful login.
ALTER TABLE users MODIFY password VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;

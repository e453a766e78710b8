-- Roles and disabled accounts. Users that existed before become editors: they could
-- already create, change and delete products.
ALTER TABLE users
    ADD COLUMN IF NOT EXISTS role ENUM('viewer', 'editor', 'admin') NOT NULL DEFAULT 'editor',
    ADD COLUMN IF NOT EXISTS disabled BOOLEAN NOT NULL DEFAULT FALSE;
-- The last-admin rule finds the enabled admins through this index.
CREATE INDEX IF NOT EXISTS users_role ON users (role, disabled);

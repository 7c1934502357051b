-- The experiment store: every change to an experiment, surface or layer is a new immutable
-- version row (who, when, why); config_heads points at the current version of each object.
CREATE TABLE IF NOT EXISTS config_versions (
    kind       text        NOT NULL CHECK (kind IN ('experiment', 'surface', 'layer')),
    name       text        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    body       jsonb       NOT NULL,
    status     text,
    action     text        NOT NULL,
    author     text        NOT NULL,
    reason     text,
    revision   bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, name, version)
);

CREATE TABLE IF NOT EXISTS config_heads (
    kind     text    NOT NULL,
    name     text    NOT NULL,
    version  integer NOT NULL,
    PRIMARY KEY (kind, name),
    FOREIGN KEY (kind, name, version) REFERENCES config_versions (kind, name, version)
);

-- One counter for the whole configuration: replicas poll it as a safety net for NOTIFY.
CREATE TABLE IF NOT EXISTS config_state (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint  NOT NULL DEFAULT 0
);
INSERT INTO config_state (id, revision) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;

-- History is append-only: versions are never updated nor deleted.
CREATE OR REPLACE FUNCTION config_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'config_versions rows are immutable (% of %/% v%)', TG_OP, OLD.kind, OLD.name, OLD.version;
END $$;
DROP TRIGGER IF EXISTS config_versions_immutable ON config_versions;
CREATE TRIGGER config_versions_immutable BEFORE UPDATE OR DELETE ON config_versions
    FOR EACH ROW EXECUTE FUNCTION config_versions_immutable();

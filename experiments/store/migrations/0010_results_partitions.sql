-- Results stored one partition per model version (docs/ml-engineers.md, "Storage layout").
--
--   results                      PARTITION BY LIST (model)
--     res_<model>_<md5>          PARTITION BY LIST (version)     one per model
--       res_<model>_<md5>_<v>_l<load>                            one leaf per loaded version
--
-- A load COPYs into a standalone table, indexes and validates it, then ATTACHes it in one short
-- transaction (SHARE UPDATE EXCLUSIVE on the model's table: readers are never blocked). Dropping
-- a version drops its leaf: no DELETE, no bloat, no VACUUM. Each leaf has its own primary key on
-- unit_id, so a point read is one small index probe after partition pruning.
--
-- items is text, not jsonb: it holds exactly the JSON bytes the gateway serves and caches, so a
-- load does not pay for jsonb parsing and a read does not pay for jsonb output.

CREATE OR REPLACE FUNCTION results_model_table(m text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT 'res_' || left(regexp_replace(lower(m), '[^a-z0-9]+', '_', 'g'), 20) || '_' || left(md5(m), 8) $$;

CREATE OR REPLACE FUNCTION results_leaf_table(m text, v text, load_id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT results_model_table(m) || '_' || left(regexp_replace(lower(v), '[^a-z0-9]+', '_', 'g'), 12) || '_l' || load_id $$;

ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS results_table text;

-- One row per load: lineage, and what `abgate batch activate` attaches.
CREATE SEQUENCE IF NOT EXISTS result_load_ids;
CREATE TABLE IF NOT EXISTS result_loads (
    load_id       bigint      PRIMARY KEY,
    model         text        NOT NULL,
    version       text        NOT NULL,
    stage_table   text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('staged', 'active', 'superseded', 'dropped')),
    default_items jsonb       NOT NULL,
    unit_count    bigint      NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz
);
CREATE INDEX IF NOT EXISTS result_loads_model_version ON result_loads (model, version);

-- Every move of an alias, from any writer (CLI, registry sync, experiments): rollback reads it.
CREATE TABLE IF NOT EXISTS model_alias_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model      text        NOT NULL,
    alias      text        NOT NULL,
    version    text        NOT NULL,
    previous   text,
    action     text        NOT NULL DEFAULT 'set',
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS model_alias_history_alias ON model_alias_history (model, alias, id);

CREATE OR REPLACE FUNCTION model_aliases_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NEW;
    END IF;
    INSERT INTO model_alias_history (model, alias, version, previous, action)
    VALUES (NEW.model, NEW.alias, NEW.version,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.version END,
            coalesce(nullif(current_setting('abgate.alias_action', true), ''), 'set'));
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS model_aliases_history ON model_aliases;
CREATE TRIGGER model_aliases_history AFTER INSERT OR UPDATE ON model_aliases
    FOR EACH ROW EXECUTE FUNCTION model_aliases_history();
INSERT INTO model_alias_history (model, alias, version)
    SELECT model, alias, version FROM model_aliases ORDER BY updated_at;

-- Move the rows of migration 0001's single table into the partitioned layout.
ALTER TABLE results RENAME TO results_0001;
ALTER INDEX IF EXISTS results_pkey RENAME TO results_0001_pkey;
CREATE TABLE results (
    model   text NOT NULL,
    version text NOT NULL,
    unit_id text NOT NULL,
    -- Ordered, best first: [{"id": .., "score": ..}, ...], the exact bytes cached in Redis.
    items   text NOT NULL
) PARTITION BY LIST (model);

DO $$
DECLARE
    mv record;
    mt text;
    leaf text;
    lid bigint;
BEGIN
    FOR mv IN SELECT DISTINCT model, version FROM results_0001 ORDER BY 1, 2 LOOP
        mt := results_model_table(mv.model);
        IF to_regclass(quote_ident(mt)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE results) PARTITION BY LIST (version)', mt);
            EXECUTE format('ALTER TABLE results ATTACH PARTITION %I FOR VALUES IN (%L)', mt, mv.model);
        END IF;
        lid := nextval('result_load_ids');
        leaf := results_leaf_table(mv.model, mv.version, lid);
        EXECUTE format('CREATE TABLE %I (LIKE results, PRIMARY KEY (unit_id))', leaf);
        EXECUTE format('INSERT INTO %I SELECT model, version, unit_id, items::text FROM results_0001'
                       ' WHERE model = %L AND version = %L', leaf, mv.model, mv.version);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)', mt, leaf, mv.version);
        UPDATE model_versions SET results_table = leaf WHERE model = mv.model AND version = mv.version;
        INSERT INTO result_loads (load_id, model, version, stage_table, state, default_items, unit_count,
                                  metadata, activated_at)
            SELECT lid, mv.model, mv.version, leaf, 'active', coalesce(v.default_items, '[]'::jsonb),
                   coalesce(v.unit_count, 0), coalesce(v.metadata, '{}'::jsonb), v.activated_at
            FROM (SELECT 1) AS one
            LEFT JOIN model_versions v ON v.model = mv.model AND v.version = mv.version;
    END LOOP;
END $$;
DROP TABLE results_0001;

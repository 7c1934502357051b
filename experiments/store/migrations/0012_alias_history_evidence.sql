-- Promotion evidence in the alias history (docs/ml-engineers.md, "Promotion with evidence").
--
-- `abgate registry promote --experiment` records why an alias moved: the experiment, the
-- variant, the primary metric's lift and CI, the archive digest, who promoted, and whether a
-- refusal was overridden (--force, with its reason). The writer sets the transaction-local
-- setting abgate.alias_evidence (JSON) before it moves the alias; the history trigger copies it
-- into the row it writes, so the move and its evidence commit together.
--
-- Promoting with evidence onto the version the alias already points at moves nothing; it is
-- recorded as an action 'evidence' row, which rollback skips (it is not a move).

ALTER TABLE model_alias_history ADD COLUMN IF NOT EXISTS evidence jsonb;

CREATE OR REPLACE FUNCTION model_aliases_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev jsonb := nullif(current_setting('abgate.alias_evidence', true), '')::jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        IF ev IS NOT NULL THEN
            INSERT INTO model_alias_history (model, alias, version, previous, action, evidence)
            VALUES (NEW.model, NEW.alias, NEW.version, OLD.version, 'evidence', ev);
        END IF;
        RETURN NEW;
    END IF;
    INSERT INTO model_alias_history (model, alias, version, previous, action, evidence)
    VALUES (NEW.model, NEW.alias, NEW.version,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.version END,
            coalesce(nullif(current_setting('abgate.alias_action', true), ''), 'set'), ev);
    RETURN NEW;
END $$;

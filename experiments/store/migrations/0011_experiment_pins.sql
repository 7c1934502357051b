-- Pinned arms (docs/experiments.md, "Pinned arms"): a running experiment's variant whose model is
-- an alias (models:/NAME@ALIAS) serves the version the alias named when the experiment started,
-- for the experiment's whole life. Promotion moves the alias (surfaces' default_model and
-- non-experiment traffic follow it); it never changes a running experiment's arms.
--
-- The first gateway (or `abgate experiments start`) to see the experiment running pins each alias
-- arm with INSERT ... ON CONFLICT DO NOTHING, so replicas agree on the first pin. Re-pinning is an
-- explicit, audited change (`abgate experiments repin`), and a new allocation phase because the
-- served version is part of the phase id.
CREATE TABLE IF NOT EXISTS experiment_pins (
    experiment text        NOT NULL,
    variant    text        NOT NULL,
    model      text        NOT NULL,
    alias      text        NOT NULL,
    version    text        NOT NULL,
    pinned_at  timestamptz NOT NULL DEFAULT now(),
    pinned_by  text        NOT NULL DEFAULT 'gateway',
    PRIMARY KEY (experiment, variant)
);

CREATE TABLE IF NOT EXISTS experiment_pin_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment text        NOT NULL,
    variant    text        NOT NULL,
    model      text        NOT NULL,
    alias      text        NOT NULL,
    version    text        NOT NULL,
    previous   text,
    action     text        NOT NULL CHECK (action IN ('pin', 'repin', 'unpin')),
    reason     text,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS experiment_pin_history_key ON experiment_pin_history (experiment, id);

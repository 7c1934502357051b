-- Precomputed results: one row per (model, version, unit), plus one row per model version.
CREATE TABLE IF NOT EXISTS model_versions (
    model        text        NOT NULL,
    version      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('loading', 'active', 'retired')),
    -- The list served to units that have no list of their own: [{"id": .., "score": ..}, ...]
    default_items jsonb      NOT NULL DEFAULT '[]'::jsonb,
    unit_count   bigint      NOT NULL DEFAULT 0,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    PRIMARY KEY (model, version)
);

CREATE TABLE IF NOT EXISTS results (
    model   text  NOT NULL,
    version text  NOT NULL,
    unit_id text  NOT NULL,
    -- Ordered, best first: [{"id": .., "score": ..}, ...], the exact bytes cached in Redis.
    items   jsonb NOT NULL,
    PRIMARY KEY (model, version, unit_id)
);

-- Aliases (models:/NAME@ALIAS) resolved by the gateway; kept in sync with the MLflow registry.
CREATE TABLE IF NOT EXISTS model_aliases (
    model      text        NOT NULL,
    alias      text        NOT NULL,
    version    text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, alias)
);

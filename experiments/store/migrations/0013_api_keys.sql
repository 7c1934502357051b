-- API keys (docs/operators.md, "API keys"): named bearer credentials scoped to surfaces, with an
-- optional rate. Only the SHA-256 of a key is stored: keys are 256-bit random strings made by
-- `abgate keys create`, so the digest cannot be reversed or brute-forced, and a stolen table
-- authenticates no one. A revoked key keeps its row (revoked_at set) so its name stays reserved
-- and its history readable. Gateways reload keys on NOTIFY abgate_config '<schema>:keys'.
CREATE TABLE IF NOT EXISTS api_keys (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL UNIQUE,
    digest       bytea       NOT NULL UNIQUE CHECK (length(digest) = 32),
    prefix       text        NOT NULL,  -- the key's first characters, to recognise it in a list
    surfaces     text[]      NOT NULL,  -- empty: every surface
    rate         text,                  -- e.g. '500/s'; NULL: no limit
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    last_used_at timestamptz,           -- written by gateways every few seconds, not per request
    revoked_at   timestamptz,
    revoked_by   text
);

-- Every key change, append-only: who (the --author, default $USER), when, what, from where (the
-- host the command ran on and the address Postgres saw).
CREATE TABLE IF NOT EXISTS api_key_audit (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL CHECK (action IN ('create', 'revoke')),
    key_name   text        NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    host       text        NOT NULL,
    client     text        -- inet_client_addr(); NULL over a Unix socket
);

-- Version 1 of the history store: runs, the files that reached the office, and what each run made of them.
-- Times are ISO 8601 text with their UTC offset ("2020-07-20T09:15:02+07:00"). Never edit a released
-- migration: add a new file.

CREATE TABLE runs (
    run_id             INTEGER PRIMARY KEY,
    started_at         TEXT NOT NULL,
    finished_at        TEXT,
    tool_version       TEXT NOT NULL,
    definition_id      TEXT NOT NULL,
    definition_version INTEGER NOT NULL,
    period             TEXT NOT NULL,
    command            TEXT NOT NULL DEFAULT 'consolidate',  -- consolidate | import
    inbox              TEXT,
    out_dir            TEXT,
    units_file         TEXT,
    units_sha256       TEXT,
    options            TEXT NOT NULL DEFAULT '{}'            -- JSON
);

-- Every distinct file content ever seen (by SHA-256): when it first reached the office.
CREATE TABLE files (
    sha256       TEXT PRIMARY KEY,
    first_seen   TEXT NOT NULL,                              -- first run (or fetch) that saw these bytes
    received_at  TEXT NOT NULL,                              -- the email's date when it came by mail, else first_seen
    received_via TEXT NOT NULL CHECK (received_via IN ('inbox', 'email', 'import')),
    size         INTEGER
);

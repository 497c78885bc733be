-- Version 1 of the history store: runs, the files that reached the office, and what each run made of them.
-- Times are ISO 8601 text with their UTC offset ("2020-07-20T09:15:02+07:00"); dates are "2020-06-20".
-- Never edit a released migration: add a new file. Every table and column is described in README.md.

-- One consolidation (or import of an earlier period's results).
CREATE TABLE runs (
    run_id             INTEGER PRIMARY KEY,
    started_at         TEXT NOT NULL,
    finished_at        TEXT,
    tool_version       TEXT NOT NULL,
    definition_id      TEXT NOT NULL,
    definition_version INTEGER NOT NULL,
    period             TEXT NOT NULL,
    command            TEXT NOT NULL DEFAULT 'consolidate'
                       CHECK (command IN ('consolidate', 'import')),
    inbox              TEXT,                                 -- the inbox folder, or the imported file
    out_dir            TEXT,
    units_file         TEXT,
    units_sha256       TEXT,
    deadline           TEXT,                                 -- the period's deadline this run applied
    options            TEXT NOT NULL DEFAULT '{}',           -- JSON
    files              INTEGER,                              -- counts, as the run's summary gave them
    units_expected     INTEGER,
    units_received     INTEGER,
    errors             INTEGER,
    warnings           INTEGER
);
CREATE INDEX runs_by_period ON runs (definition_id, period);

-- Every distinct file content ever seen (by SHA-256): when it first reached the office.
CREATE TABLE files (
    sha256       TEXT PRIMARY KEY,
    first_seen   TEXT NOT NULL,                              -- first run (or fetch) that saw these bytes
    received_at  TEXT NOT NULL,                              -- the email's date when it came by mail, else first_seen
    received_via TEXT NOT NULL CHECK (received_via IN ('inbox', 'email', 'import')),
    size         INTEGER
);

-- Every file a run looked at (a row per file and run), and what the run made of it.
CREATE TABLE submissions (
    submission_id INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    file          TEXT NOT NULL,                             -- name relative to the inbox, as people see it
    path          TEXT,                                      -- where it was read
    sha256        TEXT REFERENCES files (sha256),            -- NULL for imported results
    unit_code     TEXT,
    unit_name     TEXT,
    period        TEXT,                                      -- the period the file itself carries
    report_date   TEXT,                                      -- as the ward wrote it
    received_at   TEXT,                                      -- the received time this run used
    late_days     INTEGER,                                   -- days after the deadline (0: on time)
    status        TEXT NOT NULL CHECK (status IN ('used', 'superseded', 'duplicate', 'wrong-period',
                                                  'unidentified', 'unreadable', 'not-used')),
    superseded_by INTEGER REFERENCES submissions (submission_id) DEFERRABLE INITIALLY DEFERRED,
    errors        INTEGER NOT NULL DEFAULT 0,
    warnings      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX submissions_by_run ON submissions (run_id);
CREATE INDEX submissions_by_unit ON submissions (unit_code, period);

-- Every value read from a submission, with its source cell. Clustered by submission: a run appends.
CREATE TABLE cell_values (
    submission_id INTEGER NOT NULL REFERENCES submissions (submission_id) ON DELETE CASCADE,
    field         TEXT NOT NULL,                             -- the definition's field id ("total.participants")
    cell          TEXT,                                      -- A1 address in the ward's file
    value         REAL,                                      -- the figure (a total: recomputed from its parts)
    text          TEXT,                                      -- a value that is not a figure (name, date, choice)
    raw           TEXT,                                      -- what the ward typed, where it differs from value
    counted       INTEGER,                                   -- 1/0: in the district figures; NULL: not said
    PRIMARY KEY (submission_id, field)
) WITHOUT ROWID;

-- Every finding of a run, as findings.csv has it.
CREATE TABLE findings (
    finding_id    INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    submission_id INTEGER REFERENCES submissions (submission_id) ON DELETE CASCADE,
    file          TEXT,
    unit_code     TEXT,
    sheet         TEXT,
    cell          TEXT,
    field         TEXT,
    rule          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    message       TEXT NOT NULL,
    value         TEXT,
    expected      TEXT,
    suggestion    TEXT
);
CREATE INDEX findings_by_run ON findings (run_id);
CREATE INDEX findings_by_submission ON findings (submission_id);

-- The consolidated figures of each district, as the run's district workbook shows them.
CREATE TABLE district_figures (
    run_id        INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    district_code TEXT NOT NULL,
    field         TEXT NOT NULL,
    value         REAL,
    units         INTEGER,                                   -- how many units the figure is built from
    PRIMARY KEY (run_id, district_code, field)
) WITHOUT ROWID;

-- The fields of each definition version (sheet, label, unit), so that the store reads on its own.
CREATE TABLE fields (
    definition_id      TEXT NOT NULL,
    definition_version INTEGER NOT NULL,
    field              TEXT NOT NULL,
    sheet              TEXT NOT NULL,
    label              TEXT NOT NULL,
    unit               TEXT,
    type               TEXT NOT NULL,
    PRIMARY KEY (definition_id, definition_version, field)
) WITHOUT ROWID;

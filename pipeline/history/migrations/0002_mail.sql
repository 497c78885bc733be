-- Version 2 of the history store: the office mailbox (tonghop fetch) and the letters sent to wards
-- (tonghop send). Times are ISO 8601 text with their UTC offset. Never edit a released migration.

-- Where the last fetch stopped, per login and mailbox. A changed UIDVALIDITY means the server numbered
-- the mailbox anew: the fetch starts again from the first message (Message-ID and content hash keep
-- it from saving anything twice).
CREATE TABLE mail_fetch_state (
    account     TEXT NOT NULL,                -- user@host:port
    mailbox     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    fetched_at  TEXT NOT NULL,
    PRIMARY KEY (account, mailbox)
);

-- Every message looked at once (a message is never processed twice).
CREATE TABLE mail_messages (
    message_key TEXT PRIMARY KEY,             -- the Message-ID, or "sha256:<hash of the message>" without one
    account     TEXT NOT NULL,
    mailbox     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    message_id  TEXT,
    date        TEXT,                         -- the message's Date, ISO 8601 (the received time of its files)
    sender      TEXT,                         -- the From address, lower case
    subject     TEXT,
    sha256      TEXT,                         -- of the whole message as downloaded (NULL when not downloaded)
    size        INTEGER,
    unit_code   TEXT,                         -- the sender's unit (units list, column email), NULL when unknown
    period      TEXT NOT NULL,                -- the period whose inbox its files went to
    status      TEXT NOT NULL CHECK (status IN ('done', 'too-large', 'unreadable')),
    fetched_at  TEXT NOT NULL
);

-- What became of each file a message carried (a .zip's entries each have a row).
CREATE TABLE mail_attachments (
    attachment_id INTEGER PRIMARY KEY,
    message_key   TEXT NOT NULL REFERENCES mail_messages (message_key),
    name          TEXT NOT NULL,              -- as the sender named it (decoded); "a.zip/b.xlsx" inside a zip
    saved_path    TEXT,                       -- where it was saved (NULL unless saved)
    sha256        TEXT,
    size          INTEGER,
    unit_code     TEXT,
    status        TEXT NOT NULL CHECK (status IN ('saved', 'duplicate', 'refused')),
    rule          TEXT,                       -- the mail-* rule of schemas/rules.yaml when refused or renamed
    detail        TEXT
);
CREATE INDEX mail_attachments_sha256 ON mail_attachments (sha256);

-- Every letter tonghop send sent or tried to send. A letter is identified by its content_key (the
-- ward's file and findings, or the reminder's period and template): a rerun skips what was sent.
CREATE TABLE mail_sent (
    sent_id      INTEGER PRIMARY KEY,
    period       TEXT NOT NULL,
    unit_code    TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('feedback', 'reminder')),
    recipient    TEXT NOT NULL,               -- the addresses, separated by ", "
    subject      TEXT NOT NULL,
    content_key  TEXT NOT NULL,
    attachments  TEXT NOT NULL DEFAULT '[]',  -- JSON list of {"name", "sha256"}
    eml_path     TEXT,
    message_id   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('sent', 'refused', 'retry')),
    detail       TEXT,                        -- the server's answer when refused or to retry
    at           TEXT NOT NULL
);
CREATE INDEX mail_sent_key ON mail_sent (period, unit_code, kind, content_key);

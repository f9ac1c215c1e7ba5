-- Made by tests/schemas/make.py from git history: do not edit.
-- the schema of pagerd d924603 (user_version 1)
CREATE TABLE IF NOT EXISTS incidents (
    service TEXT NOT NULL,
    number INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    message TEXT NOT NULL,
    alerts INTEGER NOT NULL,
    round INTEGER NOT NULL,
    level INTEGER NOT NULL,
    deadline REAL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    exhausted INTEGER NOT NULL,
    closed_at REAL,
    PRIMARY KEY (service, number)
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (service) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    incident INTEGER NOT NULL,
    round INTEGER NOT NULL,
    level INTEGER NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_at REAL NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending, retrying, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    provider_id TEXT,
    sent_at REAL,
    UNIQUE (service, incident, round, level, channel, address)
);
CREATE INDEX IF NOT EXISTS notifications_undelivered ON notifications (seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS notifications_incident ON notifications (service, incident);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    notification TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,  -- sent, retrying, failed
    provider_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_notification ON delivery_attempts (notification);

PRAGMA user_version = 1;

INSERT INTO incidents (service, number, opened_at, message, alerts, round, level, deadline, acknowledged_at, acknowledged_by, exhausted, closed_at) VALUES
  ('api', 1, 1799992800.0, 'old', 1, 1, 1, NULL, NULL, NULL, 0, 1799996400.0),
  ('api', 2, 1799999940.0, 'disk full', 3, 1, 1, 1800000240.0, NULL, NULL, 0, NULL);
INSERT INTO notifications (id, service, incident, round, level, channel, address, message, opened_at, created_at, state) VALUES
  ('api#2/1/1/email:alice@example.com', 'api', 2, 1, 1, 'email', 'alice@example.com', 'disk full', 1799999940.0, 1799999940.0, 'sent'),
  ('api#2/1/1/sms:+14155550100', 'api', 2, 1, 1, 'sms', '+14155550100', 'disk full', 1799999940.0, 1799999940.0, 'pending');
UPDATE notifications SET attempts = 1, sent_at = 1799999941.0 WHERE state = 'sent';
INSERT INTO delivery_attempts (notification, at, outcome) VALUES ('api#2/1/1/email:alice@example.com', 1799999941.0, 'sent');

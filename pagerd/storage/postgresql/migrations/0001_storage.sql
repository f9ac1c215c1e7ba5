-- pagerd's state on PostgreSQL, as the SQLite adapter keeps it (pagerd/storage/sqlite/schema.py,
-- version 17), in PostgreSQL's types, with each service's shard (pager.shards.shard_of) stored
-- beside it wherever a row belongs to a service, so that a node reads its own shards by index.
-- Times are seconds since the epoch (double precision), as the port speaks them.

CREATE TABLE incidents (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- prune's resume key, as SQLite's rowid
    service text NOT NULL,
    shard smallint NOT NULL,
    number integer NOT NULL,
    opened_at double precision NOT NULL,
    message text NOT NULL,
    alerts integer NOT NULL,
    round integer NOT NULL,
    level integer NOT NULL,
    deadline double precision,
    acknowledged_at double precision,
    acknowledged_by text,
    exhausted boolean NOT NULL,
    closed_at double precision,
    heartbeat_only boolean NOT NULL DEFAULT false,
    held_by_alert boolean NOT NULL DEFAULT false,
    acknowledged_via text,
    round_base integer NOT NULL DEFAULT 0,
    silenced boolean NOT NULL DEFAULT false,
    PRIMARY KEY (service, number)
);
CREATE INDEX incidents_shard ON incidents (shard, service, number);
CREATE INDEX incidents_closed ON incidents (closed_at, seq) WHERE closed_at IS NOT NULL;

CREATE TABLE notifications (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- service#incident/round/level/target: the unique key that makes a second row for one step
    -- impossible, and (by its prefix, in byte order: "C") the index of an incident's rows.
    id text COLLATE "C" NOT NULL UNIQUE,
    service text NOT NULL,
    shard smallint NOT NULL,
    incident integer NOT NULL,
    round integer NOT NULL,
    level integer NOT NULL,
    channel text NOT NULL,
    address text NOT NULL,
    message text NOT NULL,
    opened_at double precision NOT NULL,
    created_at double precision NOT NULL,
    state text NOT NULL DEFAULT 'pending',  -- pending, retrying, sent, failed
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision,
    last_error text,
    provider_id text,
    sent_at double precision,
    origin text NOT NULL DEFAULT '',
    step integer NOT NULL DEFAULT 1,
    via text,
    not_before double precision
);
CREATE INDEX notifications_undelivered ON notifications (shard, seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX notifications_failed ON notifications (service, incident) WHERE state = 'failed';

CREATE TABLE delivery_attempts (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification text COLLATE "C" NOT NULL,
    at double precision NOT NULL,
    outcome text NOT NULL,  -- sent, retrying, failed, cancelled
    provider_id text,
    error text
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts (notification);

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service text NOT NULL,
    incident integer NOT NULL,
    at double precision NOT NULL,
    op text NOT NULL,
    detail text,
    by text,
    peer_uid bigint,
    peer_user text,
    peer_pid bigint,
    integration text,
    via text
);
CREATE INDEX events_incident ON events (service, incident, seq);

CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

CREATE TABLE firing (
    service text NOT NULL,
    shard smallint NOT NULL,
    integration text NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (service, integration, key)
);
CREATE INDEX firing_shard ON firing (shard);

CREATE TABLE heartbeats (
    service text PRIMARY KEY,
    shard smallint NOT NULL,
    interval double precision NOT NULL,
    due_at double precision,  -- NULL: missed, waiting for the next check-in
    last_at double precision
);
CREATE INDEX heartbeats_shard ON heartbeats (shard);

CREATE TABLE reply_codes (
    address text NOT NULL,
    code integer NOT NULL,
    service text NOT NULL,
    incident integer NOT NULL,
    sent_at double precision NOT NULL,
    PRIMARY KEY (address, code)
);
CREATE INDEX reply_codes_incident ON reply_codes (address, service, incident);
CREATE INDEX reply_codes_latest ON reply_codes (address, sent_at);
CREATE TABLE sms_replies (message_id text PRIMARY KEY, at double precision NOT NULL);
CREATE INDEX sms_replies_at ON sms_replies (at);

CREATE TABLE alert_starts (
    service text NOT NULL,
    shard smallint NOT NULL,
    integration text NOT NULL,
    key text NOT NULL,
    starts_at bigint NOT NULL,  -- the sender's startsAt: nanoseconds since the epoch
    resolved_at double precision,
    PRIMARY KEY (service, integration, key)
);
CREATE INDEX alert_starts_shard ON alert_starts (shard);

CREATE TABLE silences (
    id bigint PRIMARY KEY,
    service text NOT NULL,
    shard smallint NOT NULL,
    starts_at double precision NOT NULL,
    ends_at double precision NOT NULL,
    reason text NOT NULL,
    by text,
    created_at double precision NOT NULL,
    ended_at double precision,
    ended_by text,
    active boolean NOT NULL DEFAULT true  -- false: over, dropped from its service's state
);
CREATE INDEX silences_active ON silences (shard, service) WHERE active;

CREATE TABLE overrides (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never given twice
    schedule text NOT NULL,
    by_person text NOT NULL,
    for_person text,
    starts_at double precision NOT NULL,
    ends_at double precision NOT NULL,
    created_at double precision NOT NULL,
    made_by text,
    removed_by text,
    removed_at double precision
);
CREATE INDEX overrides_schedule ON overrides (schedule, ends_at);

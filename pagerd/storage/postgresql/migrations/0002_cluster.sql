-- The cluster (pagerd/storage/cluster.py): the nodes alive, a lease per shard with its fencing
-- epoch, the inbox through which any node hands an event to its service's owner, the answers
-- of events handled, and the counters ids are numbered from on every node. Expiry times are
-- the database's own clock (timestamptz, compared with now()): no node's clock decides.

CREATE TABLE nodes (
    name text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE leases (
    shard smallint PRIMARY KEY CHECK (shard >= 0 AND shard < 256),
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
-- Every shard has its row from the start: a claim and a fenced write lock it, never insert it.
INSERT INTO leases (shard) SELECT generate_series(0, 255);

CREATE TABLE inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shard smallint NOT NULL,
    service text NOT NULL,
    event bytea NOT NULL,
    at double precision NOT NULL,
    node text NOT NULL
);
CREATE INDEX inbox_shard ON inbox (shard, id);

CREATE TABLE answers (
    id bigint PRIMARY KEY,
    answer text NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX answers_at ON answers (answered_at);

CREATE TABLE counters (
    name text PRIMARY KEY,
    next bigint NOT NULL
);

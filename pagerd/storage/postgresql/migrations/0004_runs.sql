-- A lease is held by a run of pagerd, not by a name (review of issue 17, finding 1): two
-- processes given one node_name (a copied config, hosts cloned from one image) were both taken
-- for the owner of every shard. `run` is the store's per-run identity (`Store.origin`): a claim
-- by another run of the same name is a change of owner (epoch + 1, only once the lease is over),
-- a fenced write must come from the run holding the lease, and a node's row in `nodes` is its
-- run's until it expires.
--
-- `config` (finding 3): the hash of the config each node runs (`Config.cluster_sha256`),
-- published at every join, so that a node applies the rule "a service removed from the config
-- has its open incident closed" only while every live node runs the same config.

ALTER TABLE nodes ADD COLUMN run text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN config text NOT NULL DEFAULT '';
ALTER TABLE leases ADD COLUMN run text NOT NULL DEFAULT '';

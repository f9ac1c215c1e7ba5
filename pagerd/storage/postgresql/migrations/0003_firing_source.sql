-- Where an acknowledge or resolve naming only its source (an Events v2 dedup_key, an
-- Alertmanager fingerprint) goes, on a node that does not hold its service: looked up by
-- integration and key (`Store.firing_service`), once per such event, never by a scan.

CREATE INDEX firing_source ON firing (integration, key);

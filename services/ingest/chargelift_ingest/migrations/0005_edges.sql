-- Edge identities (docs/poller.md, "edge identity"): one poller connection speaking for
-- many chargers. The broker publishes only the edge's last will when such a poller
-- dies, so ingest keeps which chargers each edge serves (its retained
-- edges/<edge>/chargers list) and, when the edge goes offline, records each of them
-- offline through the same path as a charger's own availability message.
--
-- Kept in the database, not in ingest's memory: retained messages are re-sent only to
-- a new subscription (ingest's persistent session does not get them again after a
-- restart), never to a shared subscription ($share/...), and the list and the will may
-- reach different ingest processes of a share group.

CREATE TABLE edges (
    edge                    text PRIMARY KEY,
    chargers                text[]      NOT NULL DEFAULT '{}',
    chargers_changed_at     timestamptz,
    availability            text CHECK (availability IN ('online', 'offline')),
    availability_changed_at timestamptz
);

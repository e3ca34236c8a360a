"""Version 4: incidents that grow, group and are acknowledged.

The outbox gains ``topic`` (what an update is about: several updates of one incident are
queued once each, and the index that queues each notification once includes it) and
``reference`` (what a sink answered to an incident's first trigger, such as Slack's message
``ts``, for its updates and resolve). ``incident_members`` names every episode an incident
pages for (the alerts of one notification escalated together share one); ``acks`` keeps
who acknowledged or resolved an incident, and where. Existing rows keep topic ``''`` and
no reference: they are sent as before, and every episode an earlier trigger paged for
becomes its incident's member.
"""

from __future__ import annotations

_TABLES = """
    CREATE TABLE incident_members (
        dedup_key TEXT NOT NULL,
        episode_id {ref} NOT NULL,
        joined_at {real} NOT NULL,
        PRIMARY KEY (dedup_key, episode_id)
    );
    CREATE INDEX incident_members_by_episode ON incident_members (episode_id);
    CREATE TABLE acks (
        id {key},
        dedup_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        by_whom TEXT NOT NULL,
        source TEXT NOT NULL,
        url TEXT NOT NULL,
        at {real} NOT NULL
    );
    CREATE INDEX acks_by_key ON acks (dedup_key);
    INSERT INTO incident_members (dedup_key, episode_id, joined_at)
        SELECT dedup_key, episode_id, MIN(created_at) FROM outbox WHERE event = 'trigger'
        GROUP BY dedup_key, episode_id
"""
_OUTBOX = """
    ALTER TABLE outbox ADD COLUMN topic TEXT NOT NULL DEFAULT '';
    ALTER TABLE outbox ADD COLUMN reference TEXT;
    ALTER TABLE outbox ADD COLUMN note TEXT NOT NULL DEFAULT '';
    DROP INDEX outbox_once;
    CREATE UNIQUE INDEX outbox_once ON outbox (dedup_key, sink, event, tier, topic);
    CREATE INDEX outbox_by_episode ON outbox (episode_id);
"""
SCRIPTS = {
    "sqlite": _OUTBOX + _TABLES.format(key="INTEGER PRIMARY KEY", ref="INTEGER", real="REAL"),
    "postgres": _OUTBOX
    + _TABLES.format(key="BIGSERIAL PRIMARY KEY", ref="BIGINT", real="DOUBLE PRECISION"),
}

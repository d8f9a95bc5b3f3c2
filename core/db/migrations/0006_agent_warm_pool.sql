-- Each agent's warm pool as its latest heartbeat reported it (crucible.protocol.reports
-- PoolReport: ready kernels per image, starting, memory, claims, misses); {} for none.
ALTER TABLE agents ADD COLUMN warm_pool jsonb NOT NULL DEFAULT '{}';

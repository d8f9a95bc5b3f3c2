-- Images each agent has installed, with their labels, as reported in heartbeats.
ALTER TABLE agents ADD COLUMN images jsonb NOT NULL DEFAULT '[]';

-- Migration 2: look events up by kind (the daemon reads the last epoch of each agent from
-- its agent.registered / agent.deregistered events at start; the dashboard lists alerts).
CREATE INDEX events_kind ON events (kind);

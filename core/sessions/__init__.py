"""Compute sessions: their records, resources, lifecycle and events."""

"""Crucible agent: supervises kernel containers on one host."""

"""Compatibility suite: the official Backend.AI client SDK 18.12.3 against `crucible up`."""

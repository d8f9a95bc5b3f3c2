"""Crucible: a self-hostable backend that runs untrusted code, speaking the Backend.AI API v4."""

__version__ = "0.1.0"

#: The API version this server implements; `GET /` returns exactly this (spec 1.2).
API_VERSION = "v4.20181215"

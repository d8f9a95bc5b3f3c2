"""The manager process: its components (`components`), its HTTP server (`server`) and the
cluster-wide operational status (`status`).

Import from the submodules (``crucible.manager.server`` ...): the API layer imports
`crucible.manager.status`, so this package must not import the server at import time.
"""

"""The warm pool: kernels started ahead of time that new sessions take over.

`pool` keeps them (started, counted, shrunk, claimed, discarded), `claims` records which
session a claimed one serves (its labels were written before anyone claimed it), `mounts`
hands a claimed kernel its vfolders through mount propagation, `memory` reads the host's
available memory. docs/internals.md, "The warm pool".
"""

"""Virtual folders (spec 6): names, ownership, sharing, quotas and mounts.

The bytes live on storage hosts (plugins, see `crucible.hookspecs.storage`); this
package owns everything else and is the only place that decides who may do what.
"""

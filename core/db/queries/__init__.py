"""Every SQL statement Crucible runs, one module per table (the Parsec v2 backend's
``*_queries`` layout).

Each statement is a named async function whose first argument is an
`crucible.db.pool.Executor`: the `Database` itself, a connection inside the caller's
transaction (the caller owns the transaction and its locks), or the GraphQL loader, which
counts statements. Rows come back as frozen attrs classes built by a named constructor
(`Kernel.from_row`), never as driver records.

A statement lives in the module of the table it writes, or of the table whose rows it
returns; joins read the other tables. To add a column to ``kernels``, change the
migration, `kernels.Kernel` and the ``_COLUMNS`` of `kernels`; nothing outside this
package writes SQL.
"""

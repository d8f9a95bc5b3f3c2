-- Sessions that fit no agent yet wait in the queue as PENDING rows (no agent, no
-- container), placed in the scheduler's order when capacity frees.
ALTER TABLE kernels DROP CONSTRAINT kernels_status_check;
ALTER TABLE kernels ADD CONSTRAINT kernels_status_check
    CHECK (status IN ('PENDING', 'PREPARING', 'BUILDING', 'RUNNING', 'RESTARTING', 'RESIZING',
                      'SUSPENDED', 'TERMINATING', 'TERMINATED', 'ERROR'));
CREATE INDEX kernels_pending ON kernels (created_at) WHERE status = 'PENDING';

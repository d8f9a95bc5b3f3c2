-- The schema for the whole mission: later features fill in behaviour, not tables.

CREATE TABLE resource_policies (
    name                    text PRIMARY KEY,
    max_concurrent_sessions integer NOT NULL DEFAULT 5 CHECK (max_concurrent_sessions > 0),
    max_cpu_cores           numeric(10, 3),              -- NULL: no cap beyond the image's
    max_memory_bytes        bigint,
    max_vfolder_count       integer,
    max_vfolder_size_bytes  bigint,
    created_at              timestamptz NOT NULL DEFAULT now()
);
INSERT INTO resource_policies (name) VALUES ('default');

CREATE TABLE keypairs (
    access_key        varchar(20) PRIMARY KEY,
    secret_key        varchar(40) NOT NULL,
    user_id           text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 256),
    is_active         boolean NOT NULL DEFAULT true,
    is_admin          boolean NOT NULL DEFAULT false,
    resource_policy   text NOT NULL DEFAULT 'default' REFERENCES resource_policies (name),
    concurrency_limit integer NOT NULL DEFAULT 5 CHECK (concurrency_limit >= 0),
    rate_limit        integer NOT NULL DEFAULT 5000 CHECK (rate_limit >= 0),
    num_queries       bigint NOT NULL DEFAULT 0,
    last_used         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keypairs_user_id ON keypairs (user_id);

CREATE TABLE agents (
    id              text PRIMARY KEY,
    status          text NOT NULL DEFAULT 'ALIVE'
                    CHECK (status IN ('ALIVE', 'LOST', 'RESTARTING', 'TERMINATED')),
    region          text NOT NULL DEFAULT 'local',
    addr            text NOT NULL,
    version         text NOT NULL DEFAULT '',
    available_slots jsonb NOT NULL DEFAULT '{}',   -- {"cpu": 4, "mem": 8589934592, ...}
    occupied_slots  jsonb NOT NULL DEFAULT '{}',
    last_stat       jsonb,
    first_contact   timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    lost_at         timestamptz
);
CREATE INDEX agents_status ON agents (status);

-- One row per container; a session is its master kernel plus its workers.
CREATE TABLE kernels (
    id             uuid PRIMARY KEY,
    sess_id        text NOT NULL,                   -- the clientSessionToken (spec 4.1)
    role           text NOT NULL DEFAULT 'master' CHECK (role IN ('master', 'worker')),
    access_key     varchar(20) NOT NULL REFERENCES keypairs (access_key),
    agent_id       text REFERENCES agents (id),
    container_id   text,
    status         text NOT NULL DEFAULT 'PREPARING'
                   CHECK (status IN ('PREPARING', 'BUILDING', 'RUNNING', 'RESTARTING', 'RESIZING',
                                     'SUSPENDED', 'TERMINATING', 'TERMINATED', 'ERROR')),
    status_info    text,
    image          text NOT NULL,                   -- resolved image reference
    lang           text NOT NULL,                   -- as the client asked
    tag            text CHECK (length(tag) <= 64),
    cluster_size   integer NOT NULL DEFAULT 1,
    environ        jsonb NOT NULL DEFAULT '{}',
    mounts         jsonb NOT NULL DEFAULT '[]',
    occupied_slots jsonb NOT NULL DEFAULT '{}',     -- what the scheduler reserved
    num_queries    bigint NOT NULL DEFAULT 0,
    last_stat      jsonb,                           -- the latest container stats object
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_active    timestamptz NOT NULL DEFAULT now(),
    terminated_at  timestamptz
);
-- One access key has at most one live session per token (spec 4.1).
CREATE UNIQUE INDEX kernels_live_token ON kernels (access_key, sess_id)
    WHERE role = 'master' AND status <> 'TERMINATED';
CREATE INDEX kernels_status ON kernels (status);
CREATE INDEX kernels_agent ON kernels (agent_id) WHERE status <> 'TERMINATED';

CREATE TABLE vfolders (
    id            uuid PRIMARY KEY,
    host          text NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    owner_access_key varchar(20) NOT NULL REFERENCES keypairs (access_key),
    max_files     integer NOT NULL,
    max_size      bigint NOT NULL,                  -- bytes
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used     timestamptz
);
CREATE UNIQUE INDEX vfolders_owner_name ON vfolders (owner_access_key, name);

CREATE TABLE vfolder_permissions (
    vfolder_id  uuid NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    access_key  varchar(20) NOT NULL REFERENCES keypairs (access_key),
    permission  text NOT NULL CHECK (permission IN ('ro', 'rw', 'rd')),
    PRIMARY KEY (vfolder_id, access_key)
);

CREATE TABLE vfolder_invitations (
    id          uuid PRIMARY KEY,
    vfolder_id  uuid NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    inviter     text NOT NULL,                      -- user ids, not access keys (spec 2.5)
    invitee     text NOT NULL,
    permission  text NOT NULL CHECK (permission IN ('ro', 'rw', 'rd')),
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'accepted', 'rejected', 'canceled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz
);
CREATE INDEX vfolder_invitations_invitee ON vfolder_invitations (invitee) WHERE state = 'pending';

-- Usage statistics per access key and day, accumulated from agent reports.
CREATE TABLE usage_daily (
    access_key        varchar(20) NOT NULL REFERENCES keypairs (access_key),
    day               date NOT NULL,
    sessions_started  integer NOT NULL DEFAULT 0,
    executions        bigint NOT NULL DEFAULT 0,
    cpu_time_ms       bigint NOT NULL DEFAULT 0,
    mem_peak_bytes    bigint NOT NULL DEFAULT 0,
    mem_sample_sum    numeric NOT NULL DEFAULT 0,   -- sum of sampled bytes, for the average
    mem_samples       bigint NOT NULL DEFAULT 0,
    storage_bytes     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (access_key, day)
);

-- Cluster-wide manager state shared by every manager process (spec 8).
CREATE TABLE manager_state (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO manager_state (key, value) VALUES ('status', 'running');

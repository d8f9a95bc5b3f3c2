-- The apps a session's image declares (spec 9 ai.backend.service-ports), as its agent
-- reported them when the kernel was created: the session's servicePorts (spec 4.2).
ALTER TABLE kernels ADD COLUMN service_ports jsonb NOT NULL DEFAULT '[]';

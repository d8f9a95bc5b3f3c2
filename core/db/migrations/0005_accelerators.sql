-- GPUs (issue 12): a resource policy's cap on them (per session and for all of a
-- keypair's live sessions; NULL: no cap), and GPU time in the daily usage statistics
-- (milliseconds of one whole GPU: half a GPU for two seconds is 1000).
ALTER TABLE resource_policies ADD COLUMN max_gpu_slots numeric(10, 2);
ALTER TABLE usage_daily ADD COLUMN gpu_time_ms bigint NOT NULL DEFAULT 0;

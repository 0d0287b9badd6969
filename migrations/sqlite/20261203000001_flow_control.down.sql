DROP TABLE flow_history;
DROP TABLE task_types;
ALTER TABLE queues DROP COLUMN keyed;
ALTER TABLE queues DROP COLUMN max_per_key;
ALTER TABLE queues DROP COLUMN rate_tat;
ALTER TABLE queues DROP COLUMN rate_per_ms;
ALTER TABLE queues DROP COLUMN rate_max;
ALTER TABLE tasks DROP COLUMN concurrency_key;

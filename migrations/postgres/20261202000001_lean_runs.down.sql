ALTER TABLE tasks RESET (fillfactor);
DROP FUNCTION taskq_v7_floor(timestamptz);
DROP INDEX tasks_unsuccessful_type_idx;
DROP INDEX tasks_unsuccessful_idx;
CREATE INDEX tasks_queued_run_at_idx ON tasks (queue, run_at) WHERE status = 'queued';
CREATE INDEX tasks_completed_idx ON tasks (status, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX tasks_type_id_idx ON tasks (type, id DESC);
CREATE INDEX tasks_status_id_idx ON tasks (status, id DESC);

-- Starts recorded with their ends become events of their own again.
INSERT INTO task_history (id, task_id, event_type, status, retry_count, worker_id, created_at)
OVERRIDING SYSTEM VALUE
SELECT e.id, e.task_id, e.event_type, e.status, e.retry_count, e.worker_id, e.created_at
FROM task_events AS e
WHERE NOT EXISTS (SELECT 1 FROM task_history AS h WHERE h.id = e.id);
DROP VIEW task_events;
ALTER TABLE task_history DROP COLUMN started_id, DROP COLUMN started_at;
DROP INDEX tasks_succeeded_idx;
ALTER TABLE tasks DROP COLUMN started_event_id, DROP COLUMN completed_event_id;

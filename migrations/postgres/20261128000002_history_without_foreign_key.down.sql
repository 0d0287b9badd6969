DELETE FROM task_history AS h WHERE NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.id = h.task_id);
ALTER TABLE task_history ADD CONSTRAINT task_history_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;

-- task_history loses its foreign key to tasks.
--
-- Every event is inserted by the statement that changes its task, in the same
-- transaction, and the Pruner deletes a task's events with the task in one statement:
-- what the key checked holds by construction. The check itself was a trigger call and
-- an index probe of tasks for every event, three per task run, on the hottest path
-- there is (docs/benchmarks.md measures the difference).
ALTER TABLE task_history DROP CONSTRAINT task_history_task_id_fkey;

DROP VIEW task_events;

-- Every event of every task, as `taskq check` reads them on either backend. On
-- PostgreSQL the view also shows the starts that are recorded with their ends; here
-- every event has a row of its own (docs/design.md, "History").
CREATE VIEW task_events AS SELECT *, id AS recorded_id FROM task_history;

DROP TABLE leader_terms;
DROP TABLE leaders;
DROP TABLE schedule_history;
DROP TABLE schedules;
DROP INDEX tasks_schedule_tick_key;
ALTER TABLE tasks DROP COLUMN tick_at;
ALTER TABLE tasks DROP COLUMN schedule;

DROP TABLE leader_terms;
DROP TABLE leaders;
DROP TABLE schedule_history;
DROP TABLE schedules;
ALTER TABLE tasks DROP COLUMN tick_at, DROP COLUMN schedule;

DROP FUNCTION taskq_enqueue(text, jsonb, jsonb);
DROP FUNCTION taskq_option_text(jsonb, text);
DROP FUNCTION taskq_option_int(jsonb, text, bigint, bigint, integer);
DROP FUNCTION taskq_uuid_v7();

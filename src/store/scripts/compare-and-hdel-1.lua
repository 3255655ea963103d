-- Deletes a hash field if it still holds the given value: removes an outbox index entry only if
-- no writer wrote it again since it was read (outbox.ts).
--
-- KEYS[1] the hash (the outbox index)
-- ARGV[1] the field (a record's tag)
-- ARGV[2] the value it must hold (the version read)
--
-- Returns 1 when the field was deleted, 0 when it held another value or none.

if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0

-- Deletes a key if it still holds the given value: gives up a job claim, or clears a reset
-- marker, that may meanwhile have expired and been taken by someone else.
--
-- KEYS[1] the key (a job claim, a reset marker)
-- ARGV[1] the value it must hold (the claim's token, the marker's ETag)
--
-- Returns 1 when the key was deleted, 0 when it held another value or none.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0

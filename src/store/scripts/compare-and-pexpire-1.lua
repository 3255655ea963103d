-- Sets a key's time to live if it still holds the given value: extends a job claim that is
-- still ours, and never one that expired and passed to someone else.
--
-- KEYS[1] the key (a job claim)
-- ARGV[1] the value it must hold (the claim's token)
-- ARGV[2] the new time to live, in milliseconds
--
-- Returns 1 when the expiry was set, 0 when the key held another value or none.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0

-- Takes a task out of the dead letters with its attempts and last error forgotten; the caller
-- adds it again (add-6.lua).
--
-- KEYS[1] dead: hash of task id -> its dead letter (JSON)
-- KEYS[2] attempts: hash of task id -> failed attempts so far
-- KEYS[3] errors: hash of task id -> the error of its last failed attempt
-- ARGV[1] the task id
--
-- Returns 1 when the task was a dead letter, 0 when it was not.

local dead, attempts, errors = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

if redis.call('HDEL', dead, id) == 0 then return 0 end
redis.call('HDEL', attempts, id)
redis.call('HDEL', errors, id)
return 1

-- Moves an embedded job to a new state. Only an existing job changes (HSET on a missing key would
-- invent a job without a specification), and a final state is final: a reconciler that read the
-- job just before it ended must not bring it back to life with a late RUNNING.
--
-- KEYS[1] the job: hash with id, specification, state, status, createdAt, updatedAt, ...
-- ARGV[1] the new state
-- ARGV[2] the status text ('' for none: the field goes, as it would cost a record's job more
--         memory than its text)
-- ARGV[3] now, as an ISO 8601 time (updatedAt)
--
-- Returns 1 when the job changed, 0 when there is no such job or it is in a final state.

local job = KEYS[1]
local state, status, updatedAt = ARGV[1], ARGV[2], ARGV[3]

local current = redis.call('HGET', job, 'state')
if not current or current == 'SUCCESS' or current == 'FAILURE' or current == 'EXPIRED' then return 0 end
redis.call('HSET', job, 'state', state, 'updatedAt', updatedAt)
if status == '' then redis.call('HDEL', job, 'status') else redis.call('HSET', job, 'status', status) end
return 1

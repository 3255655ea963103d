-- Moves an embedded job to a new state. Only an existing job changes (HSET on a missing key would
-- invent a job without a specification), and a final state is final: a reconciler that read the
-- job just before it ended must not bring it back to life with a late RUNNING.
--
-- KEYS[1] the job: hash with state, status, createdBy, spec, createdAt, updatedAt, ...
--         (src/ucloud/embedded-registry.ts)
-- ARGV[1] the new state
-- ARGV[2] the status text ('' for none: the field goes, as it would cost a record's job more
--         memory than its text)
-- ARGV[3] now, in epoch milliseconds (updatedAt)
--
-- Returns 1 when the job changed, 0 when there is no such job or it is in a final state.

local job = KEYS[1]
local state, status, updatedAt = ARGV[1], ARGV[2], ARGV[3]

-- One read for both fields, and no HDEL of a status that is not there (issue 13: a job's state is
-- set twice as its owner is created, IN_QUEUE then RUNNING).
local fields = redis.call('HMGET', job, 'state', 'status')
local current, previous = fields[1], fields[2]
if not current or current == 'SUCCESS' or current == 'FAILURE' or current == 'EXPIRED' then return 0 end
if status == '' then
  redis.call('HSET', job, 'state', state, 'updatedAt', updatedAt)
  if previous then redis.call('HDEL', job, 'status') end
else
  redis.call('HSET', job, 'state', state, 'status', status, 'updatedAt', updatedAt)
end
-- A status longer than 64 bytes (Redis's default hash-max-listpack-value) made the hash a hash
-- table, and Redis never makes it compact again by itself: once it is gone, the job is written
-- anew (a listpack again, when every other value is short).
if previous and #previous > 64 and #status <= 64 then
  local all = redis.call('HGETALL', job)
  redis.call('DEL', job)
  redis.call('HSET', job, unpack(all))
end
return 1

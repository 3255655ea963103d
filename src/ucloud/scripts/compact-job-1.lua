-- Rewrites a job an earlier version of the embedded registry stored (its specification as JSON in
-- the hash, which makes the hash a hash table on Redis's default settings) in today's compact
-- encoding: the specification replaced by the digest of its template (the caller wrote that to
-- iapps:job-specs first), `id` and an empty `project` dropped, ISO 8601 times as epoch
-- milliseconds. Only while the job still holds the specification the caller read; a time that
-- changed meanwhile (a state change wrote updatedAt) is kept as it is.
--
-- KEYS[1] the job
-- ARGV[1] the specification JSON the caller read
-- ARGV[2] the digest of its template
-- ARGV[3] createdAt as read, ARGV[4] the same time in epoch milliseconds
-- ARGV[5] updatedAt as read, ARGV[6] the same time in epoch milliseconds
--
-- Returns 1 when the job was rewritten, 0 when it is gone or holds another specification.

local job = KEYS[1]
if redis.call('HGET', job, 'specification') ~= ARGV[1] then return 0 end
local compact = { createdAt = { ARGV[3], ARGV[4] }, updatedAt = { ARGV[5], ARGV[6] } }
local fields = redis.call('HGETALL', job)
local kept = {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if compact[name] and value == compact[name][1] then value = compact[name][2] end
  if name ~= 'id' and name ~= 'specification' and not (name == 'project' and value == '') then
    kept[#kept + 1] = name
    kept[#kept + 1] = value
  end
end
kept[#kept + 1] = 'spec'
kept[#kept + 1] = ARGV[2]
redis.call('DEL', job)
redis.call('HSET', job, unpack(kept))
return 1

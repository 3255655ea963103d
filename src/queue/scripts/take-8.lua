-- Takes up to a number of pending tasks, each under a lease with a token of its own. A task
-- whose (app, owner) is busy with another task (a restart while a reconcile runs) is parked,
-- still dirty, until that one leaves: never two workers on one (app, owner) (spec §5).
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] busy: hash of (app, owner) tag -> the task id running for it
-- KEYS[7] parked: hash of (app, owner) tag -> a task id waiting for that tag to be free
-- KEYS[8] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the lease, in milliseconds
-- ARGV[2] the token prefix, unique per call (a token is the prefix, ':' and a counter)
-- ARGV[3] how many tasks to take at most
--
-- Returns a flat array: task id, lease token, request id ('' for none), for each task taken.

local pending, dirty, active, leases, wake, busy, parked, requestIds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local leaseMs, tokenPrefix, wanted = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])

-- The Redis server's clock: workers on machines with skewed clocks agree on leases.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- The (app, owner) part of a task id ("reconcile:syncthing:alice" -> "syncthing:alice").
local function tagOf(id)
  local at = string.find(id, ':', 1, true)
  return at and string.sub(id, at + 1) or id
end

local out = {}
local taken = 0
while taken < wanted do
  local id = redis.call('LPOP', pending)
  if not id then break end
  local tag = tagOf(id)
  if redis.call('HEXISTS', busy, tag) == 1 then
    redis.call('HSET', parked, tag, id)
  else
    taken = taken + 1
    redis.call('SREM', dirty, id)
    redis.call('ZADD', active, now + leaseMs, id)
    local token = tokenPrefix .. ':' .. taken
    redis.call('HSET', leases, id, token)
    redis.call('HSET', busy, tag, id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = redis.call('HGET', requestIds, id) or ''
  end
end
-- Wake-up tokens only say "something is pending"; with nothing pending they would make idle
-- workers spin through empty takes.
if redis.call('LLEN', pending) == 0 then redis.call('DEL', wake) end
return out

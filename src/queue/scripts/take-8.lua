-- Takes up to a number of pending tasks, each under a lease with a token of its own. A task
-- whose (app, owner) is busy with another task (a restart while a reconcile runs) is parked,
-- still dirty, until that one leaves: never two workers on one (app, owner) (spec §5).
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease (' parked' after it while a
--         task of its (app, owner) is parked)
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] busy: hash of (app, owner) tag -> the task id running for it
-- KEYS[7] parked: hash of (app, owner) tag -> a task id waiting for that tag to be free
-- KEYS[8] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the lease, in milliseconds
-- ARGV[2] the token prefix, unique per call (a token is the prefix, ':' and a counter)
-- ARGV[3] how many tasks to take at most
--
-- Returns a flat array: 1 when it emptied the pending list (a worker then waits for a wake-up
-- token rather than take again: every task pushed since came with one), else 0; then the task id,
-- lease token and request id ('' for none) of each task taken.

local pending, dirty, active, leases, wake, busy, parked, requestIds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
-- At most 1000 at once: each key's command takes them all as arguments.
local leaseMs, tokenPrefix, wanted = tonumber(ARGV[1]), ARGV[2], math.min(tonumber(ARGV[3]), 1000)

-- The Redis server's clock: workers on machines with skewed clocks agree on leases.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- The (app, owner) part of a task id ("reconcile:syncthing:alice" -> "syncthing:alice").
local function tagOf(id)
  local at = string.find(id, ':', 1, true)
  return at and string.sub(id, at + 1) or id
end

-- One LPOP for all of them, and one command per key for all taken (issue 13: the queue's
-- commands are most of what a reconcile costs Redis): only a tag's claim is per task. A task
-- parked on the way counts against `wanted`; the worker takes again when it has room.
local popped = redis.call('LPOP', pending, wanted)
local out = {1}
if not popped then
  -- Wake-up tokens only say "something is pending"; with nothing pending they would make idle
  -- workers spin through empty takes.
  redis.call('DEL', wake)
  return out
end
local taken, leaseArgs, activeArgs, inBatch = {}, {}, {}, {}
-- A task parked behind a running one marks that one's lease (' parked' after its token), so that
-- completing it looks for a parked task only when there is one (complete-12.lua).
local function markParked(running)
  local at = inBatch[running]
  if at then
    leaseArgs[at] = string.gsub(leaseArgs[at], ' parked$', '') .. ' parked'
    return
  end
  local held = redis.call('HGET', leases, running)
  if held and string.sub(held, -7) ~= ' parked' then redis.call('HSET', leases, running, held .. ' parked') end
end
for _, id in ipairs(popped) do
  if redis.call('HSETNX', busy, tagOf(id), id) == 0 then
    redis.call('HSET', parked, tagOf(id), id)
    markParked(redis.call('HGET', busy, tagOf(id)))
  else
    local token = tokenPrefix .. ':' .. (#taken + 1)
    taken[#taken + 1] = id
    leaseArgs[#leaseArgs + 1] = id
    leaseArgs[#leaseArgs + 1] = token
    inBatch[id] = #leaseArgs
    activeArgs[#activeArgs + 1] = now + leaseMs
    activeArgs[#activeArgs + 1] = id
  end
end
if #popped < wanted then redis.call('DEL', wake) else out[1] = 0 end
if #taken == 0 then return out end
redis.call('SREM', dirty, unpack(taken))
redis.call('ZADD', active, unpack(activeArgs))
redis.call('HSET', leases, unpack(leaseArgs))
local requested = redis.call('HMGET', requestIds, unpack(taken))
for i, id in ipairs(taken) do
  out[#out + 1] = id
  out[#out + 1] = tokenPrefix .. ':' .. i
  out[#out + 1] = requested[i] or ''
end
return out

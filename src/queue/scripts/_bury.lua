-- Included (`--- @include "_bury.lua"`) by fail-12.lua and promote-12.lua. Expects `dead`,
-- `attempts`, `errors`, `requestIds` (their KEYS) and `now` (the server's time, ms) in scope.

-- A task out of attempts becomes a dead letter, with the request that last asked for it.
local function bury(id, attemptCount, err)
  local requestId = redis.call('HGET', requestIds, id)
  redis.call('HSET', dead, id, cjson.encode({id = id, attempts = attemptCount, error = err, failedAt = now, requestId = requestId or nil}))
  redis.call('HDEL', attempts, id)
  redis.call('HDEL', errors, id)
  redis.call('HDEL', requestIds, id)
end

-- Hands a job a port of a pool: the one it holds while that one is still allowed, else the
-- lowest free one. The pool's two hashes (port -> job, job -> port) change together.
--
-- KEYS[1] by port: hash of port -> job id
-- KEYS[2] by job: hash of job id -> port
-- ARGV[1] the job id
-- ARGV[2] the lowest port of the range
-- ARGV[3] the end of the range (exclusive)
-- ARGV[4] ports excluded from the range, comma-separated ("a,b"; "" for none)
--
-- Returns the port, or -1 when every port of the range is taken.

local byPort, byJob = KEYS[1], KEYS[2]
local job = ARGV[1]
local excluded = {}
for p in string.gmatch(ARGV[4], '[^,]+') do excluded[p] = true end
local min, max = tonumber(ARGV[2]), tonumber(ARGV[3])

local held = redis.call('HGET', byJob, job)
if held then
  local port = tonumber(held)
  if port >= min and port < max and not excluded[held] then return port end
  redis.call('HDEL', byPort, held)
  redis.call('HDEL', byJob, job)
end
for port = min, max - 1 do
  local key = tostring(port)
  if not excluded[key] and redis.call('HEXISTS', byPort, key) == 0 then
    redis.call('HSET', byPort, key, job)
    redis.call('HSET', byJob, job, key)
    return port
  end
end
return -1

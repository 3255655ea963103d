-- Hands a job a port of a pool: the one it holds while that one is still allowed, else the first
-- of the pool's free list. A constant number of commands whatever the number of ports taken,
-- except when the free list is (re)built: the first time, and when the configured range changes.
--
-- The pool: two hashes (port -> job, job -> port) that say who holds what, and a list of the
-- ports of the range nobody holds, each once, built for the range the fourth key names. Only
-- these scripts change them, so a port is either on the free list or held, never both, and never
-- held twice.
--
-- KEYS[1] by port: hash of port -> job id
-- KEYS[2] by job: hash of job id -> port
-- KEYS[3] free: list of the ports of the range that no job holds
-- KEYS[4] range: string "<min>:<max>:<excluded>", the range the free list was built for
-- ARGV[1] the job id
-- ARGV[2] the lowest port of the range
-- ARGV[3] the end of the range (exclusive)
-- ARGV[4] ports excluded from the range, comma-separated ("a,b"; "" for none)
--
-- Returns the port, or -1 when every port of the range is taken.

local byPort, byJob, free, rangeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job = ARGV[1]
local min, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local range = ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4]
local excluded = {}
for p in string.gmatch(ARGV[4], '[^,]+') do excluded[tonumber(p)] = true end
local function allowed(port)
  return port >= min and port < max and not excluded[port]
end

-- Built the first time, and again for another range: the range's ports minus those held (a job
-- keeps a port it holds outside the new range until it asks again; none of those is free).
if redis.call('GET', rangeKey) ~= range then
  local held = {}
  for _, port in ipairs(redis.call('HKEYS', byPort)) do held[tonumber(port)] = true end
  redis.call('DEL', free)
  local batch = {}
  for port = min, max - 1 do
    if allowed(port) and not held[port] then
      batch[#batch + 1] = port
      if #batch == 1000 then
        redis.call('RPUSH', free, unpack(batch))
        batch = {}
      end
    end
  end
  if #batch > 0 then redis.call('RPUSH', free, unpack(batch)) end
  redis.call('SET', rangeKey, range)
end

local held = redis.call('HGET', byJob, job)
if held then
  if allowed(tonumber(held)) then return tonumber(held) end
  -- Outside the range now: given up, and not made free (the list holds only the range's ports).
  if redis.call('HGET', byPort, held) == job then redis.call('HDEL', byPort, held) end
  redis.call('HDEL', byJob, job)
end

while true do
  local port = redis.call('LPOP', free)
  if not port then return -1 end
  -- Never true while only these scripts change the pool; a port found held anyway is dropped.
  if redis.call('HSETNX', byPort, port, job) == 1 then
    redis.call('HSET', byJob, job, port)
    return tonumber(port)
  end
end

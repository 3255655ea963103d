-- Gives back the port a job holds in a pool (see allocate-port-4.lua). The port's entry goes only
-- if it is still this job's, and it goes back to the end of the free list only if it belongs to
-- the range the list was built for (a port held from an earlier, wider range is not free now).
--
-- KEYS[1] by port: hash of port -> job id
-- KEYS[2] by job: hash of job id -> port
-- KEYS[3] free: list of the ports of the range that no job holds
-- KEYS[4] range: string "<min>:<max>:<excluded>", the range the free list was built for
-- ARGV[1] the job id
--
-- Returns 1 when the job held a port, 0 when it held none.

local byPort, byJob, free, rangeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job = ARGV[1]

local held = redis.call('HGET', byJob, job)
if not held then return 0 end
redis.call('HDEL', byJob, job)
if redis.call('HGET', byPort, held) ~= job then return 1 end
redis.call('HDEL', byPort, held)

-- No range yet (a pool from before free lists): the first allocation builds the list from the hashes.
local range = redis.call('GET', rangeKey)
if not range then return 1 end
local min, max, excludedList = string.match(range, '^(%d+):(%d+):(.*)$')
local port = tonumber(held)
if port < tonumber(min) or port >= tonumber(max) then return 1 end
for p in string.gmatch(excludedList, '[^,]+') do
  if tonumber(p) == port then return 1 end
end
redis.call('RPUSH', free, held)
return 1

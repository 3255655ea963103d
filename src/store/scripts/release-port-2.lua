-- Gives back the port a job holds in a pool. The port's entry goes only if it is still this
-- job's.
--
-- KEYS[1] by port: hash of port -> job id
-- KEYS[2] by job: hash of job id -> port
-- ARGV[1] the job id
--
-- Returns 1 when the job held a port, 0 when it held none.

local byPort, byJob = KEYS[1], KEYS[2]
local job = ARGV[1]

local held = redis.call('HGET', byJob, job)
if not held then return 0 end
if redis.call('HGET', byPort, held) == job then redis.call('HDEL', byPort, held) end
redis.call('HDEL', byJob, job)
return 1

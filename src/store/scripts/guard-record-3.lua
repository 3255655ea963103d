-- The read under WATCH of a write that decided on this replica's cached copy of the record
-- (records.ts `attemptAssuming`), sent in the same pipeline as the write: after the WATCH, before
-- the MULTI. When the record is no longer the version the writer decided on, or its job is no
-- longer alive, it sets and deletes the guard key, which the writer's connection watches: its
-- EXEC then fails, nothing of the write lands, and the writer takes the ordinary path (the read
-- under WATCH, then the MULTI). An error in the checks does the same. (A server that refuses this
-- script or the WATCH outright is for records.ts to notice: it probes before the first such write.)
--
-- KEYS[1] the record, KEYS[2] its guard key (never holds a value), KEYS[3] the job's hash (the
--         record key again when the job is not checked here)
-- ARGV[1] the record's ETag, ARGV[2] '1' when it is detached, else '', ARGV[3] its job id
-- ARGV[4] '1' to check the job: alive while its field `state` is present and not one of ARGV[5..]
--
-- Returns 1 when the write may land, 0 when its EXEC will fail.

local ok, fits = pcall(function()
  local record = redis.call('HMGET', KEYS[1], 'etag', 'state', 'jobId')
  if record[1] ~= ARGV[1] then return false end
  if (record[2] == 'detached') ~= (ARGV[2] == '1') then return false end
  if (record[3] or '') ~= ARGV[3] then return false end
  if ARGV[4] == '1' then
    local state = redis.call('HGET', KEYS[3], 'state')
    if not state then return false end
    for i = 5, #ARGV do
      if state == ARGV[i] then return false end
    end
  end
  return true
end)
if ok and fits then return 1 end
redis.call('SET', KEYS[2], '1')
redis.call('DEL', KEYS[2])
return 0

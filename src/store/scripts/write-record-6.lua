-- Everything a write changes in its record's hash slot, as the one command of its MULTI
-- (records.ts): the transaction stays WATCH, reads, MULTI, EXEC, and its EXEC runs this script
-- only if no watched key changed. One command instead of up to ten: each command a client sends
-- costs it more than the server. The caller's MULTI may hold other commands only where this
-- script, should it not be loaded (NOSCRIPT), lands nothing they depend on.
--
-- KEYS[1] the record (hash)
-- KEYS[2] the record's ETag log (list, newest first)
-- KEYS[3] the record's history (list of versions, newest first)
-- KEYS[4] the record's job claim
-- KEYS[5] the record's reset marker
-- KEYS[6] the record's outbox (set)
-- ARGV, read in order:
--   n, then n field/value pairs of the record to set (n = 0: the record is not written)
--   m, then m fields of the record to delete (a field the new version does not have)
--   the new ETag ('' : none), how many ETags the log keeps, its expiry in milliseconds
--   the invalidation channel, the invalidation message ('' : none)
--   the version to push on the history ('' : none), how many versions the history keeps
--   '1' to delete the job claim, else ''
--   the reset marker to set ('' : none)
--   k, then k members to add to the outbox
--
-- Returns 1.

local record, etagLog, history, claim, resetMarker, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local at = 1
local function take()
  local value = ARGV[at]
  at = at + 1
  return value
end

local fieldValues = 2 * tonumber(take())
if fieldValues > 0 then redis.call('HSET', record, unpack(ARGV, at, at + fieldValues - 1)) end
at = at + fieldValues
local drops = tonumber(take())
if drops > 0 then redis.call('HDEL', record, unpack(ARGV, at, at + drops - 1)) end
at = at + drops

local etag, etagLogLength, etagLogTtl = take(), take(), take()
if etag ~= '' then
  redis.call('LPUSH', etagLog, etag)
  redis.call('LTRIM', etagLog, 0, tonumber(etagLogLength) - 1)
  redis.call('PEXPIRE', etagLog, etagLogTtl)
end
local channel, message = take(), take()
if message ~= '' then redis.call('PUBLISH', channel, message) end
local version, historyLength = take(), take()
if version ~= '' then
  redis.call('LPUSH', history, version)
  redis.call('LTRIM', history, 0, tonumber(historyLength) - 1)
end
if take() == '1' then redis.call('DEL', claim) end
local marker = take()
if marker ~= '' then redis.call('SET', resetMarker, marker) end
local members = tonumber(take())
if members > 0 then redis.call('SADD', outbox, unpack(ARGV, at, at + members - 1)) end
return 1

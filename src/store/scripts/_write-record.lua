-- What a write does in the record's hash slot (write-record-6.lua; records.ts `writeCommands` as plain commands),
-- reading its ARGV from `at` on in this order:
--   n, then n field/value pairs of the record to set (n = 0: the record is not written)
--   m, then m fields of the record to delete (a field the new version does not have)
--   the new ETag ('' : none), how many ETags the log keeps, its expiry in milliseconds
--   the invalidation channel, the invalidation message ('' : none)
--   the version to push on the history ('' : none), how many versions the history keeps
--   '1' to delete the job claim, else ''
--   the reset marker to set ('' : none)
-- Answers where the caller's own arguments begin.
local function writeRecord(record, etagLog, history, claim, resetMarker, at)
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
  return at
end

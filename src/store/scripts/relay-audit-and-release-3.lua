-- The end of a write's relay on a single server, once its task reached the queue: appends the
-- write's audit entries to the stream, takes its members out of the record's outbox, and, when
-- the outbox is empty then, deletes the record's index entry if it still holds the write's
-- version (outbox.ts: one step here for what takes three on a cluster, where these keys live in
-- three slots). No writer watches the outbox fence on a single server: it is not touched.
--
-- KEYS[1] the audit stream
-- KEYS[2] the record's outbox: set of "<payload> <nonce>"
-- KEYS[3] the outbox index: hash of record tag -> version
-- ARGV[1] the record's tag (its field in the index)
-- ARGV[2] the write's version (what its index entry held)
-- ARGV[3] the stream's approximate maximum length (XADD MAXLEN ~)
-- ARGV[4] n, the number of audit entries; then each entry as 16 arguments (field, value, ...)
-- ARGV[5 + 16n ...] the outbox members to take out
--
-- Returns how many members the outbox still holds.

local stream, outbox, index = KEYS[1], KEYS[2], KEYS[3]
local tag, version, maxLength, entries = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local next = 5
for _ = 1, entries do
  redis.call('XADD', stream, 'MAXLEN', '~', maxLength, '*', unpack(ARGV, next, next + 15))
  next = next + 16
end
if next <= #ARGV then redis.call('SREM', outbox, unpack(ARGV, next)) end
local left = redis.call('SCARD', outbox)
if left == 0 and redis.call('HGET', index, tag) == version then redis.call('HDEL', index, tag) end
return left

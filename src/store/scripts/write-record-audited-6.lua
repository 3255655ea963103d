-- Everything a write changes on a single server but its task, as one command of its MULTI
-- (records.ts): what write-record-6.lua does in the record's slot, and the write's audit entry
-- appended to the audit stream (audit.ts), so that an entry lands exactly when its write does.
-- The write's task joins the same MULTI through the queue's own add script, beside this one: a
-- single server needs no outbox, and nothing of the write is left for after EXEC. Should this
-- script not be loaded (NOSCRIPT), nothing of the write lands, and the task beside it is only a
-- reconcile more.
--
-- KEYS[1] the record (hash)
-- KEYS[2] the record's ETag log (list, newest first)
-- KEYS[3] the record's history (list of versions, newest first)
-- KEYS[4] the record's job claim
-- KEYS[5] the record's reset marker
-- KEYS[6] the audit stream
-- ARGV, read in order: the write's own (see _write-record.lua), then
--   the stream's approximate maximum length (XADD MAXLEN ~)
--   n, the number of audit entries; then each entry as 16 arguments (field, value, ...)
--
-- Returns 1.

--- @include "_write-record.lua"

local at = writeRecord(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], 1)
local maxLength, entries = ARGV[at], tonumber(ARGV[at + 1])
at = at + 2
for _ = 1, entries do
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', maxLength, '*', unpack(ARGV, at, at + 15))
  at = at + 16
end
return 1

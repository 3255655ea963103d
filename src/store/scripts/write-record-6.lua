-- Everything a write changes in its record's hash slot, as the one command of its MULTI
-- (records.ts): the transaction stays WATCH, reads, MULTI, EXEC, and its EXEC runs this script
-- only if no watched key changed. The caller's MULTI may hold other commands only where this
-- script, should it not be loaded (NOSCRIPT), lands nothing they depend on.
-- The write's task and audit entry join the record's outbox, for the relay after EXEC (outbox.ts):
-- the path of a Redis Cluster, where the queue and the audit stream live in other slots. On a
-- single server a write sends the same changes as plain commands of its MULTI instead, with the
-- audit entry's XADD (records.ts, `writeCommands`).
--
-- KEYS[1] the record (hash)
-- KEYS[2] the record's ETag log (list, newest first)
-- KEYS[3] the record's history (list of versions, newest first)
-- KEYS[4] the record's job claim
-- KEYS[5] the record's reset marker
-- KEYS[6] the record's outbox (set)
-- ARGV, read in order: the write's own (see _write-record.lua), then
--   k, then k members to add to the outbox
--
-- Returns 1.

--- @include "_write-record.lua"

local at = writeRecord(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], 1)
local members = tonumber(ARGV[at])
if members > 0 then redis.call('SADD', KEYS[6], unpack(ARGV, at + 1, at + members)) end
return 1

-- Takes tasks that reached the queue out of a record's outbox, and says how many are left. An
-- outbox found empty also "touches" the outbox fence (sets and deletes it): a writer that wrote
-- its outbox index entry outside its MULTI (on Redis Cluster) watches the fence, so its EXEC fails
-- if it could otherwise land after this look and after its index entry was removed (outbox.ts).
--
-- KEYS[1] the record's outbox: set of "<task id> <nonce>"
-- KEYS[2] the record's outbox fence: a key that never holds a value
-- ARGV    the members to take out (none: only look)
--
-- Returns how many members the outbox still holds.

local outbox, fence = KEYS[1], KEYS[2]
if #ARGV > 0 then redis.call('SREM', outbox, unpack(ARGV)) end
local left = redis.call('SCARD', outbox)
if left == 0 then
  redis.call('SET', fence, '1')
  redis.call('DEL', fence)
end
return left

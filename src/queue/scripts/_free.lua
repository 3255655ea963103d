-- Included (`--- @include "_free.lua"`) by the scripts that end a task's run: complete-12.lua
-- (which frees the tag itself, knowing from the lease whether a task is parked), fail-12.lua,
-- promote-12.lua. Expects `pending`, `wake`, `busy` and `parked` (their KEYS) in scope.

-- Wake one idle worker; the token list is capped, since one token may start many tasks.
local function wakeOne()
  if redis.call('LLEN', wake) < 256 then redis.call('RPUSH', wake, '1') end
end

-- The (app, owner) part of a task id ("reconcile:syncthing:alice" -> "syncthing:alice"): tasks of
-- one tag never run at once, whatever their kind.
local function tagOf(id)
  local at = string.find(id, ':', 1, true)
  return at and string.sub(id, at + 1) or id
end

-- A task leaves the active set: its (app, owner) is free again, and a task of it that had to wait
-- (parked by take-8.lua) goes back to pending.
local function free(id)
  local tag = tagOf(id)
  -- The tag is this task's: take-8.lua claimed it with HSETNX, and nothing else takes it before free.
  redis.call('HDEL', busy, tag)
  local waiting = redis.call('HGET', parked, tag)
  if waiting then
    redis.call('HDEL', parked, tag)
    redis.call('RPUSH', pending, waiting)
    wakeOne()
  end
end

-- Appends one broadcast to the stream, in one atomic step.
-- KEYS[1] the stream, KEYS[2] its meta hash (run, seq).
-- ARGV[1] the message, ARGV[2] about how many entries to keep, ARGV[3] the
-- time of publishing (ms, for the delivery histogram).
-- Returns {run, seq, prev}: the new entry is `<run>-<seq>`, and `prev` the
-- id of the stream's entry before it (0-0 for the first).
--
-- Other writers may have put entries in the stream (by hand, another
-- program, a later version of this server): the new id must follow the
-- stream's own last id, not only the counter, or XADD fails.

-- Ids are two decimal integers. Compared as text, since Lua's numbers are
-- doubles and lose precision past 2^53.
local function less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end

local exists = redis.call('EXISTS', KEYS[1]) == 1
local prev = '0-0'
if exists then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' then
      prev = info[i + 1]
    end
  end
end
local top_run, top_seq = string.match(prev, '^(%d+)-(%d+)$')

local now = redis.call('TIME')
local now_run = now[1] .. string.format('%06d', tonumber(now[2]))
local run = redis.call('HGET', KEYS[2], 'run')
local seq
if not exists or not run or not string.match(run, '^%d+$') or less(top_run, run) then
  -- A new stream, one begun again by another writer (its last id is below
  -- this run), or the meta lost: a new run, the time it began (µs).
  run = now_run
  seq = 1
else
  seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
end

-- Past the stream's last id, whoever wrote it.
local function after_top()
  if #top_seq > 15 then
    return nil
  end
  return tonumber(top_seq) + 1
end
if less(run, top_run) then
  if less(top_run, now_run) then
    -- Another writer went past this run: a new run.
    run = now_run
    seq = 1
  else
    -- Another writer went past the clock: carry on in its run.
    run = top_run
    seq = after_top()
  end
elseif run == top_run and (#top_seq > 15 or seq <= tonumber(top_seq)) then
  seq = after_top()
end
if not seq then
  return redis.error_reply('the stream\'s newest id, ' .. prev ..
    ', leaves no room for ids after it: delete the stream')
end

redis.call('HSET', KEYS[2], 'run', run, 'seq', seq)
local id = run .. '-' .. string.format('%d', seq)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id,
  'message', ARGV[1], 'at', ARGV[3], 'prev', prev)
return {run, seq, prev}

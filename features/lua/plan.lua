-- Executes one feature plan (see features/plan.py): reads first, then writes unless the
-- event id was seen before. ARGV: dedupe_key|"", seen_ttl, n_reads, n_writes, ops...
local argv = ARGV
local dedupe, seen_ttl = argv[1], tonumber(argv[2])
local n_reads, n_writes = tonumber(argv[3]), tonumber(argv[4])
local i = 5
local out = {}

local function sum_range(key, p, lo, hi)
  if hi < lo then return 0 end
  local fields = {}
  for k = lo, hi do fields[#fields + 1] = p .. '|' .. k end
  local s = 0
  for _, v in ipairs(redis.call('HMGET', key, unpack(fields))) do
    if v then s = s + tonumber(v) end
  end
  return s
end

for _ = 1, n_reads do
  local op = argv[i]
  if op == 'S' then
    out[#out + 1] = sum_range(argv[i + 1], argv[i + 2], tonumber(argv[i + 3]), tonumber(argv[i + 4]))
    i = i + 5
  elseif op == 'C' then
    local n = tonumber(argv[i + 1])
    local keys = {}
    for j = 1, n do keys[j] = argv[i + 1 + j] end
    if n > 0 then out[#out + 1] = redis.call('PFCOUNT', unpack(keys)) else out[#out + 1] = 0 end
    i = i + 2 + n
  elseif op == 'L' then
    out[#out + 1] = redis.call('HMGET', argv[i + 1], 'l|' .. argv[i + 2], 't|' .. argv[i + 2])
    i = i + 3
  elseif op == 'G' then
    out[#out + 1] = redis.call('HGET', argv[i + 1], argv[i + 2])
    i = i + 3
  else
    return redis.error_reply('bad read op ' .. tostring(op))
  end
end

local dup = 0
if dedupe ~= '' then
  if not redis.call('SET', dedupe, '1', 'NX', 'EX', seen_ttl) then dup = 1 end
end

local skip = false
for _ = 1, n_writes do
  local op = argv[i]
  if op == 'I' then
    if dup == 0 and not skip then redis.call('HINCRBY', argv[i + 1], argv[i + 2], argv[i + 3]) end
    skip = false
    i = i + 4
  elseif op == 'T' then
    -- advance the retention horizon of a prefix to k; drop fields that fell out; a following
    -- I for a bucket already out of retention is skipped
    local key, p, k, keep, kw = argv[i + 1], argv[i + 2], tonumber(argv[i + 3]), tonumber(argv[i + 4]), tonumber(argv[i + 5])
    if dup == 0 then
      local last = tonumber(redis.call('HGET', key, '_k|' .. p))
      local horizon = k
      if last and last > k then horizon = last end
      if last and k > last then
        local lo, hi = math.max(last - keep + 1, k - 2 * keep + 1), k - keep
        local fields = {}
        for x = lo, hi do fields[#fields + 1] = p .. '|' .. x end
        if #fields > 0 then redis.call('HDEL', key, unpack(fields)) end
      end
      if not last or k > last then redis.call('HSET', key, '_k|' .. p, k) end
      skip = kw <= horizon - keep
    end
    i = i + 6
  elseif op == 'H' then
    if dup == 0 then
      redis.call('PFADD', argv[i + 1], argv[i + 2])
      redis.call('EXPIRE', argv[i + 1], argv[i + 3])
    end
    i = i + 4
  elseif op == 'V' then
    if dup == 0 then
      local key, name, ts = argv[i + 1], argv[i + 2], tonumber(argv[i + 4])
      local cur = tonumber(redis.call('HGET', key, 't|' .. name))
      if not cur or ts >= cur then redis.call('HSET', key, 'l|' .. name, argv[i + 3], 't|' .. name, argv[i + 4]) end
    end
    i = i + 5
  elseif op == 'M' then
    if dup == 0 then
      local cur = tonumber(redis.call('HGET', argv[i + 1], argv[i + 2]))
      if not cur or tonumber(argv[i + 3]) > cur then redis.call('HSET', argv[i + 1], argv[i + 2], argv[i + 3]) end
    end
    i = i + 4
  elseif op == 'E' then
    if dup == 0 then redis.call('EXPIRE', argv[i + 1], argv[i + 2]) end
    i = i + 3
  else
    return redis.error_reply('bad write op ' .. tostring(op))
  end
end
return {dup, out}

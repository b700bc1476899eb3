-- The online store's write function (see features/plan.py and features/KEYS.md), loaded once
-- as a library with FUNCTION LOAD.  ARGV: dedupe key or "", seen_ttl, n_ops, ops...
-- Returns 1 when the dedupe key shows the event was applied before (nothing is written).
-- Work here is kept to string moves and native commands: Lua's number formatting is slow.

local function trim(x, keep_after)
  -- drop leading "w:s" pairs with w <= keep_after
  local pos = 1
  while pos do
    local w = tonumber(string.match(x, '^(%-?%d+):', pos))
    if w > keep_after then return string.sub(x, pos) .. ',' end
    pos = string.find(x, ',', pos, true)
    if pos then pos = pos + 1 end
  end
  return ''
end

local function late(x, k, d)
  -- a late event in bucket k: record k if new; every later bucket's total includes it
  local parts, placed = {}, false
  for ws, vs in string.gmatch(x, '(%-?%d+):(%-?%d+)') do
    local w, s = tonumber(ws), tonumber(vs)
    if not placed and w >= k then
      if w > k then parts[#parts + 1] = k .. ':' .. s end
      placed = true
    end
    if w > k then parts[#parts + 1] = ws .. ':' .. (s + d) else parts[#parts + 1] = ws .. ':' .. vs end
  end
  return table.concat(parts, ',')
end

local function write_hash(key, ttl, argv, a, n)
  local fields, idx, items = {}, {}, {}
  local function want(f)
    if not idx[f] then fields[#fields + 1] = f; idx[f] = #fields end
  end
  for _ = 1, n do
    local kind = argv[a]
    if kind == 'A' then
      local p = argv[a + 1]
      want(p)
      items[#items + 1] = {kind, p, argv[a + 2], argv[a + 3], tonumber(argv[a + 4])}
      a = a + 5
    elseif kind == 'X' then
      want(argv[a + 1])
      items[#items + 1] = {kind, argv[a + 1], argv[a + 2], argv[a + 3], tonumber(argv[a + 4])}
      a = a + 5
    elseif kind == 'V' then
      want('t|' .. argv[a + 1])
      items[#items + 1] = {kind, argv[a + 1], argv[a + 2], argv[a + 3]}
      a = a + 4
    elseif kind == 'M' then
      want(argv[a + 1])
      items[#items + 1] = {kind, argv[a + 1], argv[a + 2]}
      a = a + 3
    else -- 'I'
      items[#items + 1] = {kind, argv[a + 1], argv[a + 2]}
      a = a + 3
    end
  end
  local cur = {}
  if #fields > 0 then
    local v = redis.call('HMGET', key, unpack(fields))
    for f, j in pairs(idx) do cur[f] = v[j] end
  end
  local set, incr = {}, {}
  local function put(f, value) cur[f] = value; set[#set + 1] = f; set[#set + 1] = value end
  for _, it in ipairs(items) do
    local kind = it[1]
    if kind == 'A' then
      -- the counter's field: "total;last;w:s,w:s,..." (see features/plan.py)
      local p, ks, d, keep = it[2], it[3], it[4], it[5]
      local k, t, ls, x = tonumber(ks), '0', nil, ''
      if cur[p] then t, ls, x = string.match(cur[p], '^(%-?%d+);(%-?%d+);(.*)$') end
      local last = tonumber(ls)
      if not last or k > last then
        local kept = x ~= '' and trim(x, k - keep) or ''
        put(p, (tonumber(t) + tonumber(d)) .. ';' .. ks .. ';' .. kept .. ks .. ':' .. t)
      elseif k == last then
        put(p, (tonumber(t) + tonumber(d)) .. ';' .. ls .. ';' .. x)
      elseif k > last - keep then
        put(p, (tonumber(t) + tonumber(d)) .. ';' .. ls .. ';' .. late(x, k, tonumber(d)))
      end
    elseif kind == 'X' then
      -- the field is "w:m,w:m,...": the largest value of each bucket within retention
      local p, ks, vs, keep = it[2], it[3], it[4], it[5]
      local k, v = tonumber(ks), tonumber(vs)
      local entries, newest = {}, k
      for ws, ms in string.gmatch(cur[p] or '', '(%-?%d+):(%-?%d+)') do
        local w = tonumber(ws)
        entries[#entries + 1] = {w, ws, ms}
        if w > newest then newest = w end
      end
      if k > newest - keep then
        local parts, placed = {}, false
        for _, e in ipairs(entries) do
          if e[1] > newest - keep then
            if not placed and e[1] >= k then
              if e[1] == k then
                if v > tonumber(e[3]) then e[3] = vs end
              else
                parts[#parts + 1] = ks .. ':' .. vs
              end
              placed = true
            end
            parts[#parts + 1] = e[2] .. ':' .. e[3]
          end
        end
        if not placed then parts[#parts + 1] = ks .. ':' .. vs end
        put(p, table.concat(parts, ','))
      end
    elseif kind == 'V' then
      local old = tonumber(cur['t|' .. it[2]])
      if not old or tonumber(it[4]) >= old then put('l|' .. it[2], it[3]); put('t|' .. it[2], it[4]) end
    elseif kind == 'M' then
      local old = tonumber(cur[it[2]])
      if not old or tonumber(it[3]) > old then put(it[2], it[3]) end
    else
      incr[#incr + 1] = {it[2], it[3]}
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  for _, inc in ipairs(incr) do redis.call('HINCRBY', key, inc[1], inc[2]) end
  redis.call('EXPIRE', key, ttl)
  return a
end

local function apply(_keys, argv)
  local dedupe, seen_ttl = argv[1], argv[2]
  if dedupe ~= '' and not redis.call('SET', dedupe, '1', 'NX', 'EX', seen_ttl) then return 1 end
  local i = 4
  for _ = 1, tonumber(argv[3]) do
    local op = argv[i]
    if op == 'W' then
      i = write_hash(argv[i + 1], argv[i + 2], argv, i + 4, tonumber(argv[i + 3]))
    elseif op == 'Y' then
      if redis.call('ZADD', argv[i + 1], 'GT', argv[i + 3], argv[i + 2]) > 0 then
        redis.call('ZREMRANGEBYSCORE', argv[i + 1], '-inf', argv[i + 4])
      end
      redis.call('EXPIRE', argv[i + 1], argv[i + 5])
      i = i + 6
    elseif op == 'H' then
      redis.call('PFADD', argv[i + 1], argv[i + 2])
      redis.call('EXPIRE', argv[i + 1], argv[i + 3])
      i = i + 4
    elseif op == 'R' then
      redis.call('ZADD', argv[i + 1], 'GT', argv[i + 3], argv[i + 2])
      redis.call('ZREMRANGEBYRANK', argv[i + 1], 0, -(tonumber(argv[i + 4]) + 1))
      redis.call('EXPIRE', argv[i + 1], argv[i + 5])
      i = i + 6
    elseif op == 'Z' then
      redis.call('ZINCRBY', argv[i + 1], argv[i + 3], argv[i + 2])
      redis.call('EXPIRE', argv[i + 1], argv[i + 4])
      i = i + 5
    else
      return redis.error_reply('bad op ' .. tostring(op))
    end
  end
  return 0
end

redis.register_function(FUNCTION_NAME, apply)
-- read-only canary: a decision asks it together with its reads, so it learns the library is
-- loaded before it sends its writes with CLIENT REPLY SKIP
redis.register_function{function_name = FUNCTION_NAME .. '_ok', callback = function() return 1 end,
                        flags = {'no-writes'}}

-- Batch ingestion's write function (features/batch.py): the operations of many events,
-- pre-aggregated per key.  Loaded in the same library after plan.lua (trim and late are its
-- locals) and after SCHEMAS, generated from the feature definitions by
-- features.batch.lua_schemas: SCHEMAS[sid] = {ttl, kinds, hash fields, keeps, single, value
-- fields of last values}, one entry per field of a view hash (C: count, A: sum, X: maximum,
-- V: last value, M: newest time).  Event ids were claimed with SET NX before the call.
-- ARGV: marker, n_ops, ops...
--   marker: "" or a key that says this call was applied: if it exists the call does nothing
--   (a replay of a call that reached Redis before its connection dropped), else it is set with
--   the writes, in the same atomic step (features/pipeline.py deletes it once the chunk is done)
--   sid key values...                  one view hash, events merged; per field of the schema:
--       C, A, X: m (k d)*m               deltas / maxima per bucket, ascending (m = 0: none)
--       V:       value ts | ""           last value, if ts >= the stored one
--       M:       value                   field = max(field, value)
--   sid.."s" key values...             one view hash, one event: C: k, A and X: k d, V: value
--                                      ts, M: value; "" for a field not written
--   Y key ttl m (member ts cutoff)*m   exact distinct members, in order (as plan.lua's Y)
--   H key ttl m member*m               PFADD, EXPIRE
--   R key m (ts member)*m              ZADD GT, keep the newest RECENT_KEEP, EXPIRE
--   Z key ttl m (incr member)*m        ZINCRBY each, EXPIRE

local function add_one(old, keep, ks, ds)
  -- plan.lua's rule for one delta ds in bucket ks; nil: out of retention.  Arithmetic on the
  -- strings themselves (Lua converts them); at most two long strings are built.
  if not old then return (0 + ds) .. ';' .. ks .. ';' .. ks .. ':0' end
  local p1 = string.find(old, ';', 1, true)
  local p2 = string.find(old, ';', p1 + 1, true)
  local ls, t = string.sub(old, p1 + 1, p2 - 1), string.sub(old, 1, p1 - 1)
  if ks == ls then -- the newest bucket again (bucket numbers are canonical integers)
    return (t + ds) .. string.sub(old, p1)
  end
  local k, last = tonumber(ks), tonumber(ls)
  if k > last then -- a new bucket: drop the snapshots out of retention, append k
    local floor, p = k - keep, p2 + 1
    while p do
      local c = string.find(old, ':', p, true)
      if not c then
        p = nil
      elseif tonumber(string.sub(old, p, c - 1)) > floor then
        break
      else
        p = string.find(old, ',', c, true)
        if p then p = p + 1 end
      end
    end
    if p then return (t + ds) .. ';' .. ks .. ';' .. string.sub(old, p) .. ',' .. ks .. ':' .. t end
    return (t + ds) .. ';' .. ks .. ';' .. ks .. ':' .. t
  elseif k > last - keep then
    return (t + ds) .. ';' .. ls .. ';' .. late(string.sub(old, p2 + 1), k, tonumber(ds))
  end
  return nil
end

local function add_many(old, keep, argv, b, m)
  -- "total;last;w:s,...": add the (k, d) pairs at argv[b..] whose bucket is within retention
  -- of the stored last bucket.  s of a bucket = everything added to earlier buckets.
  local t, ls, x = '0', nil, ''
  if old then
    local p1 = string.find(old, ';', 1, true)
    local p2 = string.find(old, ';', p1 + 1, true)
    t, ls, x = string.sub(old, 1, p1 - 1), string.sub(old, p1 + 1, p2 - 1), string.sub(old, p2 + 1)
  end
  local last = tonumber(ls)
  local nk, nks, nd = {}, {}, {}
  for j = 0, m - 1 do
    local ks = argv[b + 2 * j]
    local k = tonumber(ks)
    if not last or k > last - keep then
      nk[#nk + 1] = k; nks[#nks + 1] = ks; nd[#nd + 1] = tonumber(argv[b + 2 * j + 1])
    end
  end
  local n = #nk
  if n == 0 then return nil end
  local newest, newest_s = last, ls
  if not last or nk[n] > last then newest, newest_s = nk[n], nks[n] end
  local floor = newest - keep
  local parts, cum, j = {}, 0, 1
  local function emit(w, ws, s_str)
    if w > floor then
      parts[#parts + 1] = ws .. ':' .. (cum == 0 and s_str or (tonumber(s_str) + cum))
    end
  end
  for ws, ss in string.gmatch(x, '(%-?%d+):(%-?%d+)') do
    local w = tonumber(ws)
    while j <= n and nk[j] < w do -- a new bucket before this stored one
      emit(nk[j], nks[j], ss)
      cum = cum + nd[j]; j = j + 1
    end
    emit(w, ws, ss)
    if j <= n and nk[j] == w then cum = cum + nd[j]; j = j + 1 end
  end
  while j <= n do
    emit(nk[j], nks[j], t)
    cum = cum + nd[j]; j = j + 1
  end
  return (tonumber(t) + cum) .. ';' .. newest_s .. ';' .. table.concat(parts, ',')
end

local function max_many(old, keep, argv, b, m)
  -- "w:m,...": the largest value per bucket, buckets within retention of the newest
  local ow, ows, oms = {}, {}, {}
  for ws, ms in string.gmatch(old or '', '(%-?%d+):(%-?%d+)') do
    ow[#ow + 1] = tonumber(ws); ows[#ows + 1] = ws; oms[#oms + 1] = ms
  end
  local stored = ow[#ow] -- the newest stored bucket (entries are ascending)
  local nk, nks, nvs = {}, {}, {}
  for j = 0, m - 1 do
    local ks = argv[b + 2 * j]
    local k = tonumber(ks)
    if not stored or k > stored - keep then
      nk[#nk + 1] = k; nks[#nks + 1] = ks; nvs[#nvs + 1] = argv[b + 2 * j + 1]
    end
  end
  local n = #nk
  if n == 0 then return nil end
  local newest = stored
  if not stored or nk[n] > stored then newest = nk[n] end
  local floor = newest - keep
  local parts, i, j = {}, 1, 1
  while i <= #ow or j <= n do
    local w, ws, ms
    if j > n or (i <= #ow and ow[i] < nk[j]) then
      w, ws, ms = ow[i], ows[i], oms[i]; i = i + 1
    elseif i > #ow or nk[j] < ow[i] then
      w, ws, ms = nk[j], nks[j], nvs[j]; j = j + 1
    else -- the same bucket: the larger value
      w, ws, ms = ow[i], ows[i], oms[i]
      if tonumber(nvs[j]) > tonumber(ms) then ms = nvs[j] end
      i = i + 1; j = j + 1
    end
    if w > floor then parts[#parts + 1] = ws .. ':' .. ms end
  end
  return table.concat(parts, ',')
end

-- scratch tables reused by every hash operation (a function call runs alone)
local fields, pos, idx, cnt, set = {}, {}, {}, {}, {}

local function batch_hash(sc, argv, i)
  -- one view hash: read the fields written, compute them, write them back, refresh the TTL
  local key, kinds, names, keeps, single = argv[i + 1], sc[2], sc[3], sc[4], sc[5]
  local n = 0
  local a = i + 2
  for f = 1, #kinds do
    local kind, v = kinds[f], argv[a]
    if kind == 'M' then
      n = n + 1; fields[n] = names[f]; pos[n] = a; idx[n] = f
      a = a + 1
    elseif v == '' or v == '0' and not single and kind ~= 'V' then -- not written
      a = a + 1
    elseif single or kind == 'V' then
      n = n + 1; fields[n] = names[f]; pos[n] = a; idx[n] = f; cnt[n] = 1
      a = a + (kind == 'C' and 1 or 2)
    else
      local m = tonumber(v)
      n = n + 1; fields[n] = names[f]; pos[n] = a + 1; idx[n] = f; cnt[n] = m
      a = a + 1 + 2 * m
    end
  end
  local cur = redis.call('HMGET', key, unpack(fields, 1, n))
  local s = 0
  for j = 1, n do
    local b, f = pos[j], idx[j]
    local kind, old, value = kinds[f], cur[j], nil
    if kind == 'C' or kind == 'A' then
      if cnt[j] == 1 then
        value = add_one(old, keeps[f], argv[b], single and kind == 'C' and '1' or argv[b + 1])
      else
        value = add_many(old, keeps[f], argv, b, cnt[j])
      end
    elseif kind == 'X' then
      value = max_many(old, keeps[f], argv, b, cnt[j])
    elseif kind == 'V' then
      local t = tonumber(old)
      if not t or tonumber(argv[b + 1]) >= t then
        set[s + 1] = sc[6][f]; set[s + 2] = argv[b]; s = s + 2
        value = argv[b + 1]
      end
    else
      local t = tonumber(old)
      if not t or tonumber(argv[b]) > t then value = argv[b] end
    end
    if value then set[s + 1] = fields[j]; set[s + 2] = value; s = s + 2 end
  end
  if s > 0 then redis.call('HSET', key, unpack(set, 1, s)) end
  redis.call('EXPIRE', key, sc[1])
  return a
end

local function apply_batch(_keys, argv)
  local marker = argv[1]
  if marker ~= '' then
    if redis.call('EXISTS', marker) == 1 then return 1 end
    redis.call('SET', marker, '1', 'EX', MARKER_TTL)
  end
  local i = 3
  for _ = 1, tonumber(argv[2]) do
    local op = argv[i]
    local sc = SCHEMAS[op]
    if sc then
      i = batch_hash(sc, argv, i)
    else
      local key, m = argv[i + 1], tonumber(argv[i + 3])
      if op == 'Y' then
        local b = i + 4
        for _ = 1, m do
          if redis.call('ZADD', key, 'GT', argv[b + 1], argv[b]) > 0 then
            redis.call('ZREMRANGEBYSCORE', key, '-inf', argv[b + 2])
          end
          b = b + 3
        end
        redis.call('EXPIRE', key, argv[i + 2])
        i = b
      elseif op == 'H' then
        redis.call('PFADD', key, unpack(argv, i + 4, i + 3 + m))
        redis.call('EXPIRE', key, argv[i + 2])
        i = i + 4 + m
      elseif op == 'R' then
        m = tonumber(argv[i + 2])
        redis.call('ZADD', key, 'GT', unpack(argv, i + 3, i + 2 + 2 * m))
        redis.call('ZREMRANGEBYRANK', key, 0, -(RECENT_KEEP + 1))
        redis.call('EXPIRE', key, RECENT_TTL)
        i = i + 3 + 2 * m
      elseif op == 'Z' then
        local b = i + 4
        for _ = 1, m do
          redis.call('ZINCRBY', key, argv[b], argv[b + 1])
          b = b + 2
        end
        redis.call('EXPIRE', key, argv[i + 2])
        i = b
      else
        return redis.error_reply('bad op ' .. tostring(op))
      end
    end
  end
  return 0
end

redis.register_function(FUNCTION_NAME .. '_batch', apply_batch)

-- Keep competitor prices: one hash per SKU, competitor -> "cents|observed_at".
-- KEYS: the SKUs' hashes; ARGV: ttl_s, then (competitor, cents, observed_at) per key.
-- An observation older than the one kept for that competitor is ignored; a kept one renews
-- the hash's TTL.  Returns how many were kept.
local ttl = tonumber(ARGV[1])
local kept = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  local j = 2 + (i - 1) * 3
  local competitor, cents, at = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local old = redis.call('HGET', key, competitor)
  local newer = true
  if old then
    local sep = string.find(old, '|', 1, true)
    newer = tonumber(string.sub(old, sep + 1)) < tonumber(at)
  end
  if newer then
    redis.call('HSET', key, competitor, cents .. '|' .. at)
    redis.call('EXPIRE', key, ttl)
    kept = kept + 1
  end
end
return kept

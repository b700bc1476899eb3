-- Stock mirror: ARGV = total_key, out_key, then quadruples (sku_key, sku, warehouse,
-- available)...  Sets each warehouse's available units, recomputes the SKU's total, and keeps
-- the set of SKUs with nothing available.
local total_key, out_key = ARGV[1], ARGV[2]
local i = 3
while i <= #ARGV do
  local key, sku = ARGV[i], ARGV[i + 1]
  redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
  local total = 0
  for _, v in ipairs(redis.call('HVALS', key)) do total = total + tonumber(v) end
  redis.call('HSET', total_key, sku, total)
  if total > 0 then redis.call('SREM', out_key, sku) else redis.call('SADD', out_key, sku) end
  i = i + 4
end
return 1

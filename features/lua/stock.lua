-- Stock mirror: ARGV = total_key, then triples (sku_key, sku, warehouse, available)...
-- Sets each warehouse's available units and recomputes the SKU's total.
local total_key = ARGV[1]
local i = 2
while i <= #ARGV do
  local key, sku = ARGV[i], ARGV[i + 1]
  redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
  local total = 0
  for _, v in ipairs(redis.call('HVALS', key)) do total = total + tonumber(v) end
  redis.call('HSET', total_key, sku, total)
  i = i + 4
end
return 1

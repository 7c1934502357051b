-- wrk -t1 -c32 -d15s --latency -s units.lua http://127.0.0.1:PORT/v1/recommendations
-- post.lua with knobs, for the benchmark's other scenarios (environment variables):
--   WRK_UNITS (100000)   units u0..u{N-1}
--   WRK_MODE  (random)   random: a random unit per request; sequential: u{START}, u{START+1}, ...
--                        (each unit once: the cold-cache path when the cache was flushed)
--   WRK_START (0)        first unit of the sequential walk
--   WRK_EXCLUSIONS (20)  random exclusions among sku-0..sku-49999
--   WRK_SURFACE (home_top), WRK_TOKEN (none)
local surface = os.getenv("WRK_SURFACE") or "home_top"
local token = os.getenv("WRK_TOKEN")
local units = tonumber(os.getenv("WRK_UNITS") or "100000")
local mode = os.getenv("WRK_MODE") or "random"
local nex = tonumber(os.getenv("WRK_EXCLUSIONS") or "20")
local counter = tonumber(os.getenv("WRK_START") or "0")
math.randomseed(os.time())
request = function()
  local ex = {}
  for i = 1, nex do ex[i] = string.format('"sku-%d"', math.random(0, 49999)) end
  local unit
  if mode == "sequential" then
    unit = counter % units
    counter = counter + 1
  else
    unit = math.random(0, units - 1)
  end
  local body = string.format('{"surface":"%s","unit_id":"u%d","exclude":[%s],"limit":10}',
    surface, unit, table.concat(ex, ","))
  local headers = {["Content-Type"] = "application/json"}
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", nil, headers, body)
end

-- wrk -t1 -c32 -d15s --latency -s benchmarks/gateway/lua/post.lua http://127.0.0.1:PORT/v1/recommendations
-- A random unit among u0..u99999, 20 random exclusions among sku-0..sku-49999, limit 10: the
-- request mix of every "post" case of benchmarks/gateway/__main__.py (loadtests/scenario.py's defaults).
-- WRK_SURFACE and WRK_TOKEN set the surface and a bearer token.
local surface = os.getenv("WRK_SURFACE") or "home_top"
local token = os.getenv("WRK_TOKEN")
math.randomseed(os.time())
request = function()
  local ex = {}
  for i = 1, 20 do ex[i] = string.format('"sku-%d"', math.random(0, 49999)) end
  local body = string.format('{"surface":"%s","unit_id":"u%d","exclude":[%s],"limit":10}',
    surface, math.random(0, 99999), table.concat(ex, ","))
  local headers = {["Content-Type"] = "application/json"}
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", nil, headers, body)
end

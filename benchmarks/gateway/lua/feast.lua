-- wrk -t1 -c32 -d15s --latency -s feast.lua http://127.0.0.1:PORT/get-online-features
-- Feast's feature server: the list of one random user among u0..u{WRK_UNITS-1}.
local units = tonumber(os.getenv("WRK_UNITS") or "100000")
math.randomseed(os.time())
request = function()
  local body = string.format('{"features":["recs:items"],"entities":{"user_id":["u%d"]}}',
    math.random(0, units - 1))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

-- wrk: admitted POST /api/start_call that stay held (scripts/load, the "held" scenario). A
-- trusted server with the key in WRK_KEY speaks for end users (X-End-User-IP): every request
-- is a new address and a new number, counted from WRK_OFFSET (so the fill runs and the
-- measured run never repeat one), and with a 24 h window every admission stays in the limiter.
-- Each admission holds two keys (address and number), as a crowd at the public form would.
local counter = 0
local auth = "Bearer " .. (os.getenv("WRK_KEY") or "")
local base = tonumber(os.getenv("WRK_OFFSET") or "0")
local threads = 0

function setup(thread)
  thread:set("offset", base + threads * 5000000)
  threads = threads + 1
end

function init(args)
  counter = offset or base
end

function request()
  counter = counter + 1
  local n = counter % 10000000
  -- wrk's Lua is 5.1 (LuaJIT): arithmetic, not bit operators.
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  local body = string.format('{"phone_number":"+35191%07d","name":"Maria"}', n)
  return wrk.format("POST", "/api/start_call", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = auth,
    ["X-End-User-IP"] = ip,
  }, body)
end

-- wrk: admitted POST /api/start_call (scripts/load). A trusted server with the key in
-- WRK_KEY (authenticated callers have no per-IP limit, and every request here comes from
-- 127.0.0.1); each request names another of 1,000,000 valid Portuguese mobile numbers, so
-- with MAX_CALLS_PER_NUMBER=1000 and RATE_LIMIT_WINDOW=1 the limiter admits every one.
local counter = 0
local auth = "Bearer " .. (os.getenv("WRK_KEY") or "")
local threads = 0

function setup(thread)
  thread:set("offset", threads * 500000)
  threads = threads + 1
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  local body = string.format('{"phone_number":"+35191%07d","name":"Maria"}', counter % 1000000)
  return wrk.format("POST", "/api/start_call", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = auth,
  }, body)
end

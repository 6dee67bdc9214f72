-- wrk script for load-testing any fastkong (or Kong) deployment; the benchmark harness uses it
-- too. Configured by environment variables, all optional (docs/load-testing.md has recipes):
--
--   WRK_PATHS        comma-separated paths to cycle through, e.g. "/users,/orders?page=2"
--   WRK_PATHS_FILE   a file with one path per line (adds to WRK_PATHS)
--   WRK_HOSTS        comma-separated Host header values to cycle through (host-based routes)
--   WRK_KEYS_FILE    a file with one credential per line, sent in WRK_KEY_HEADER, cycled
--                    (many consumers: key-auth keys, "Bearer <jwt>", "Basic <base64>")
--   WRK_KEY_HEADER   the header for WRK_KEYS_FILE; default "apikey" (Kong's key-auth default)
--   WRK_RATE         fixed rate in requests/s over all threads (wrk2-style pacing, see below)
--   WRK_THREADS      with WRK_RATE: the same number as wrk -t (default 1)
--   WRK_METHOD       the method; default GET
--
-- Static headers (a single API key, a bearer token) need no script: `wrk -H 'apikey: KEY'`.
-- Without WRK_PATHS/WRK_PATHS_FILE/WRK_HOSTS/WRK_KEYS_FILE the script defines no request()
-- function, so wrk keeps sending its one pre-built request (no Lua per request).
--
-- Fixed rate: wrk is a closed loop (a connection sends when the previous answer arrived).
-- With WRK_RATE each thread hands out send slots on a fixed schedule (rate / threads per
-- second) through wrk's delay() hook: a connection whose answer came back waits for the next
-- free slot. Latency is measured from the actual send, so a stall delays the following sends
-- instead of being charged to them (wrk2 corrects for that "coordinated omission"; this does
-- not). Use it well below the peak, where the difference is small; keep enough connections
-- that one is always free (connections >= rate x expected latency).
--
-- At the end it prints one line the harness parses (latency in microseconds):
--   fastkong-wrk: requests=N errors=N p50=N p90=N p99=N p99.9=N p99.99=N max=N

local function split(text)
  local out = {}
  if text then
    for item in string.gmatch(text, "[^,]+") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then out[#out + 1] = item end
    end
  end
  return out
end

local function lines(path)
  local out = {}
  if path and path ~= "" then
    local f = assert(io.open(path, "r"), "cannot open " .. path)
    for line in f:lines() do
      line = line:match("^%s*(.-)%s*$")
      if line ~= "" and line:sub(1, 1) ~= "#" then out[#out + 1] = line end
    end
    f:close()
  end
  return out
end

local paths = split(os.getenv("WRK_PATHS"))
for _, p in ipairs(lines(os.getenv("WRK_PATHS_FILE"))) do paths[#paths + 1] = p end
local hosts = split(os.getenv("WRK_HOSTS"))
local keys = lines(os.getenv("WRK_KEYS_FILE"))
local key_header = os.getenv("WRK_KEY_HEADER") or "apikey"
local method = os.getenv("WRK_METHOD")
local rate = tonumber(os.getenv("WRK_RATE") or "")

if #paths > 0 or #hosts > 0 or #keys > 0 or method then
  -- Pre-build every distinct request once per thread; request() only picks the next one.
  local built, n = {}, 0

  function init(args)
    local np, nh, nk = math.max(#paths, 1), math.max(#hosts, 1), math.max(#keys, 1)
    -- Walk all three lists at once; with co-prime lengths every combination comes up.
    local total = math.max(np, nh, nk)
    for i = 0, total - 1 do
      local headers = {}
      for k, v in pairs(wrk.headers) do headers[k] = v end
      if #hosts > 0 then headers["Host"] = hosts[i % nh + 1] end
      if #keys > 0 then headers[key_header] = keys[i % nk + 1] end
      local path = #paths > 0 and paths[i % np + 1] or wrk.path
      built[#built + 1] = wrk.format(method or wrk.method, path, headers, wrk.body)
    end
  end

  function request()
    n = n % #built + 1
    return built[n]
  end
end

if rate and rate > 0 then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } fastkong_wrk_timespec;
    int clock_gettime(int clock_id, fastkong_wrk_timespec *tp);
  ]])
  local ts = ffi.new("fastkong_wrk_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval, next_slot -- ms between sends of this thread; the next free slot

  function delay()
    local now = now_ms()
    if not interval then
      -- A thread's Lua state does not know how many siblings it has: WRK_THREADS says (the
      -- same number as wrk -t; default 1).
      local threads = tonumber(os.getenv("WRK_THREADS") or "") or 1
      interval = 1000 * threads / rate
      next_slot = now
    end
    local slot = next_slot > now and next_slot or now
    next_slot = slot + interval
    return slot - now -- wrk truncates to whole ms; the schedule itself keeps the mean rate
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format(
    "fastkong-wrk: requests=%d errors=%d p50=%d p90=%d p99=%d p99.9=%d p99.99=%d max=%d\n",
    summary.requests, errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency:percentile(99.99), latency.max))
end

-- bench/wrk.lua — wrk script for bench/run.sh.
--
-- TB_BENCH_MODE=post (default): POST /v1/cases, every request a distinct
-- case_id: "430603-20240506-R<run>-T<thread>-<counter>". The thread number
-- comes from setup() through thread:set("tid", n), which sets a *global* in
-- the thread's own Lua state — so tid must not be declared local here (a
-- local would shadow it and every thread would send the same ids).
-- TB_BENCH_MODE=get: the plain request on the command line (wrk's fast path).
--
-- done() writes a JSON summary (counts, errors, latency percentiles incl.
-- p99.9 in microseconds) to $TB_BENCH_WRK_JSON.

local mode = os.getenv("TB_BENCH_MODE") or "post"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

if mode == "post" then
  local templates = dofile(os.getenv("TB_BENCH_TEMPLATES"))
  local run = os.getenv("TB_BENCH_RUN") or "0"
  local token = os.getenv("TB_BENCH_TOKEN")
  local counter = 0

  function init(args)
    wrk.method = "POST"
    wrk.path = "/v1/cases"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Bearer " .. token
  end

  function request()
    counter = counter + 1
    local id = string.format("430603-20240506-R%s-T%d-%09d", run, tid, counter)
    local body = (templates[(counter % #templates) + 1]:gsub("@@CASEID@@", id, 1))
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("TB_BENCH_WRK_JSON"), "w"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
  f:close()
end

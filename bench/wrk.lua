-- Drives one scenario of bench/run.py. Settings come from the environment:
--   BENCH_METHOD, BENCH_PATH ("{id}" becomes a random id up to BENCH_ID_MAX),
--   BENCH_TOKEN (Bearer), BENCH_BODY, or BENCH_BODIES (a file of bodies, one per line,
--   each sent once: split between wrk's threads, BENCH_THREADS of them).
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
end

function init(args)
  method = os.getenv("BENCH_METHOD") or "GET"
  path = os.getenv("BENCH_PATH")
  id_max = tonumber(os.getenv("BENCH_ID_MAX") or "0")
  body = os.getenv("BENCH_BODY")
  headers = {["Content-Type"] = "application/json"}
  local token = os.getenv("BENCH_TOKEN")
  if token then headers["Authorization"] = "Bearer " .. token end
  bodies, next_body = {}, 0
  local file = os.getenv("BENCH_BODIES")
  if file then
    local threads, i = tonumber(os.getenv("BENCH_THREADS")), 0
    for line in io.lines(file) do
      if i % threads == thread_index then table.insert(bodies, line) end
      i = i + 1
    end
  end
  math.randomseed(os.time() + (thread_index or 0))
end

function request()
  local p = path
  if id_max > 0 then p = string.gsub(path, "{id}", tostring(math.random(1, id_max))) end
  if #bodies > 0 then
    next_body = next_body % #bodies + 1
    return wrk.format(method, p, headers, bodies[next_body])
  end
  return wrk.format(method, p, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end

-- wrk script of benchmarks/bench_web.py: POST /api/chat, one conversation per wrk thread (each
-- thread has one connection), the FAQ questions in turn. The sessions and questions come from
-- the environment (BENCH_SESSIONS: session ids separated by ",", BENCH_QUESTIONS: by "|").
-- done() prints one line "WRKJSON {...}" for bench_web.py.

local function split(s, sep)
  local out = {}
  for part in string.gmatch(s, "([^" .. sep .. "]+)") do out[#out + 1] = part end
  return out
end

local sessions = split(os.getenv("BENCH_SESSIONS") or "", ",")
local started = 0
local threads = {}

function setup(thread)
  started = started + 1
  thread:set("sid", sessions[(started - 1) % #sessions + 1])
  thread:set("offset", started)
  threads[#threads + 1] = thread
end

function init(args)
  questions = split(os.getenv("BENCH_QUESTIONS") or "", "|")
  n = offset
  headers = {["Content-Type"] = "application/json"}
end

function request()
  n = n + 1
  local body = '{"session_id":"' .. sid .. '","text":"' .. questions[n % #questions + 1] .. '"}'
  return wrk.format("POST", "/api/chat", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end

-- wrk script of the ingest benchmark (benches/ingest.rs writes its inputs).
--
--   wrk -t2 -c32 -d10s --latency -s benches/ingest.lua URL -- TEMPLATE SIGNATURES PREFIX 2
--
-- TEMPLATE is a push payload in which "@@AFTER@@" stands for the commit SHA (twice:
-- `after` and `head_commit.id`). SIGNATURES has one line per request body: the SHA, a
-- space, and `sha256=<HMAC-SHA256 of the template with that SHA, with the webhook secret>`
-- (wrk's Lua has no HMAC, so the signatures are computed beforehand). Each thread takes
-- every Nth line, so no body is sent twice until a thread has used all of its lines
-- ("wraps" counts how often that happened); the last argument is wrk's thread count.
-- Every request gets its own X-GitHub-Delivery: PREFIX-THREAD-N.
--
-- request() builds each request in one concatenation (the request line and fixed headers
-- are prepared once in init()): on a 2-core machine wrk shares the cores with the server
-- it measures, and building the body first and then copying it again in wrk.format cost
-- wrk a third more CPU per request. The bytes sent are the same for every subject.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local before, middle, after
local shas, sigs = {}, {}
local prefix, head
local i, count = 0, 0
-- Globals, so that done() can read them through thread:get().
wraps, lines = 0, 0

function init(args)
  local template_path, signatures_path = args[1], args[2]
  prefix = args[3]
  local thread_count = tonumber(args[4])
  local f = assert(io.open(template_path, "rb"))
  local template = f:read("*a")
  f:close()
  local a, b = template:find("@@AFTER@@", 1, true)
  local c, d = template:find("@@AFTER@@", b + 1, true)
  before = template:sub(1, a - 1)
  middle = template:sub(b + 1, c - 1)
  after = template:sub(d + 1)
  local line_no = 0
  for line in io.lines(signatures_path) do
    if line_no % thread_count == tid then
      local sha, sig = line:match("^(%x+) (%S+)$")
      -- Content-Length is computed once, for 40-character SHAs.
      assert(#sha == 40, "a commit SHA is 40 hex digits: " .. line)
      table.insert(shas, sha)
      table.insert(sigs, sig)
    end
    line_no = line_no + 1
  end
  lines = #shas
  local length = #before + 40 + #middle + 40 + #after
  head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port
    .. "\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench"
    .. "\r\nX-GitHub-Event: push\r\nContent-Length: " .. length
    .. "\r\nX-GitHub-Delivery: " .. prefix .. "-"
end

function request()
  i = i + 1
  if i > #shas then
    i = 1
    wraps = wraps + 1
  end
  count = count + 1
  local sha = shas[i]
  return head .. tid .. "-" .. count .. "\r\nX-Hub-Signature-256: " .. sigs[i]
    .. "\r\n\r\n" .. before .. sha .. middle .. sha .. after
end

function done(summary, latency, requests)
  local total_wraps, total_lines = 0, 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + thread:get("wraps")
    total_lines = total_lines + thread:get("lines")
  end
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d "
      .. "wraps=%d bodies=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout,
    total_wraps, total_lines))
end

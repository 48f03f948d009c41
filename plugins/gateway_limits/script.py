"""The Lua the ``redis`` limiter runs: one atomic script per reservation (which also applies the
settlements riding along), a read-only one for :meth:`states`, and the replica heartbeat.

The arithmetic is :mod:`gateway_limits.memory`'s, line for line, on Redis's clock
(``redis.call('TIME')``; Redis 7 replicates a script's effects, so reading the clock before
writing is allowed). Every key of one call shares the demand's hash tag, so one Cluster node
runs it. A budget's window id is computed here, from that clock, so the key of the window
(``KEYS[i] .. ':' .. id``) is derived from the declared ``KEYS[i]``: the same hash tag, hence the
same slot. Floats cross the boundary as strings (``%.17g`` round-trips a double; a Lua number in
a reply would be truncated to an integer). Rules, settlements and states travel as compact
space- and ``;``-separated strings: a few arguments and a flat reply, cheap to pack and parse.

Storage, under ``<prefix>:{<tag>}:<rule name>``: a ``requests``/``tokens`` rule is a string (its
TAT, expiring when the bucket is full again); a ``parallel`` rule a sorted set of request ids by
lease expiry; a budget a hash per window (``s`` spent, ``h`` held, ``a:<threshold>`` alerted),
expiring a day after the window ends.
"""

from __future__ import annotations

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local PERIOD = 60
local EPS = 1e-6
local DAY = 86400

local function fmt(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

local function split(s, sep)
  local out = {}
  for f in string.gmatch(s, '[^' .. sep .. ']+') do out[#out + 1] = f end
  return out
end

-- a demand's rules, 'kind limit spec;...' (spec: a budget's window spec, else '_')
local function parse_rules(s)
  local rules = {}
  for i, r in ipairs(split(s, ';')) do
    local f = split(r, ' ')
    rules[i] = {kind = f[1], limit = tonumber(f[2]), spec = f[3]}
  end
  return rules
end

-- a state row: 'remaining reset_s used held window' (window '_' when none)
local function row(remaining, reset, used, held, wid)
  return int(remaining) .. ' ' .. fmt(reset) .. ' ' .. int(used) .. ' ' .. int(held) .. ' ' .. wid
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- spec: 'day', 'week', 'month' or a duration in seconds
local function window_at(spec)
  local seconds = tonumber(spec)
  if seconds then
    local index = math.floor(now / seconds)
    return string.format('%d', index), (index + 1) * seconds
  end
  local days = math.floor(now / DAY)
  if spec == 'day' then
    local y, m, d = civil_from_days(days)
    return string.format('%04d-%02d-%02d', y, m, d), (days + 1) * DAY
  elseif spec == 'week' then
    local monday = days - (days + 3) % 7
    local y, m, d = civil_from_days(monday)
    return string.format('%04d-%02d-%02d', y, m, d), (monday + 7) * DAY
  end
  local y, m = civil_from_days(days)
  local ny, nm = y, m + 1
  if m == 12 then ny, nm = y + 1, 1 end
  return string.format('%04d-%02d', y, m), days_from_civil(ny, nm, 1) * DAY
end

local function rate_n(kind, limit, tokens)
  if kind == 'r' then return 1 end
  return math.max(0, math.min(tokens, limit))
end

local function get_tat(key)
  local v = redis.call('GET', key)
  if v then return tonumber(v) end
  return now
end

local function rate_remaining(limit, tat)
  local interval = PERIOD / limit
  local ahead = math.max(tat - now, 0)
  return math.max(0, math.min(limit, math.floor((PERIOD - ahead) / interval + EPS)))
end

local function budget(key)
  local h = redis.call('HMGET', key, 's', 'h')
  return tonumber(h[1]) or 0, tonumber(h[2]) or 0
end
"""

_WRITES = """
local function set_tat(key, tat)
  redis.call('SET', key, fmt(tat), 'PX', math.ceil((tat - now + PERIOD) * 1000))
end

-- ARGV[p], ARGV[p + 1], ...: pairs of a request id and 'reserved_tokens used_tokens
-- reserved_cost used_cost;entry;entry...', an entry being 'KEYS_index kind limit window
-- thresholds' (window and thresholds '_' when none; thresholds ascending, joined by ',').
-- Returns, per budget entry, 'op entry spent held fired' (fired: thresholds joined by ',' or
-- '_'), joined by ';'.
local function settle(p)
  local feedback = {}
  local o = 0
  for i = p, #ARGV, 2 do
    o = o + 1
    local rid = ARGV[i]
    local parts = split(ARGV[i + 1], ';')
    local head = split(parts[1], ' ')
    local rtok, atok, rcost, acost = tonumber(head[1]), tonumber(head[2]), head[3], head[4]
    for e = 2, #parts do
      local f = split(parts[e], ' ')
      local key, kind, limit, wid = KEYS[tonumber(f[1])], f[2], tonumber(f[3]), f[4]
      if kind == 't' then
        local reserved = math.max(0, math.min(rtok, limit))
        set_tat(key, math.max(get_tat(key) + (atok - reserved) * PERIOD / limit, now))
      elseif kind == 'p' then
        redis.call('ZREM', key, rid)
      elseif kind == 'b' then
        local bkey = key .. ':' .. wid
        local held = tonumber(redis.call('HGET', bkey, 'h') or '0')
        if rcost ~= '0' then held = redis.call('HINCRBY', bkey, 'h', '-' .. rcost) end
        if held < 0 then
          redis.call('HSET', bkey, 'h', '0')
          held = 0
        end
        local spent = redis.call('HINCRBY', bkey, 's', acost)
        -- a window created by its settlement (its key expired meanwhile): bounded anyway
        if redis.call('PTTL', bkey) < 0 then redis.call('PEXPIRE', bkey, 40 * DAY * 1000) end
        local fired = {}
        if f[5] ~= '_' then
          for _, th in ipairs(split(f[5], ',')) do
            local reached = spent >= tonumber(th) * limit
            if reached and redis.call('HSETNX', bkey, 'a:' .. th, '1') == 1 then
              fired[#fired + 1] = th
            end
          end
        end
        local list = '_'
        if #fired > 0 then list = table.concat(fired, ',') end
        feedback[#feedback + 1] =
          o .. ' ' .. (e - 1) .. ' ' .. int(spent) .. ' ' .. int(held) .. ' ' .. list
      end
    end
  end
  return table.concat(feedback, ';')
end
"""

RESERVE = (
    _COMMON
    + _WRITES
    + """
-- ARGV: request id, tokens, cost, lease seconds, the rules (parse_rules; KEYS[i] for the i-th;
-- '' when only settling), then the settlements (see settle), applied first: they free what the
-- reservation may need. Returns {admitted, denied index, retry after, states, feedback}: the
-- states as rows (see row) joined by ';'.
local feedback = settle(6)
if ARGV[5] == '' then return {1, 0, '0', '', feedback} end
local rid, tokens, cost, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local info = parse_rules(ARGV[5])
local denied, retry = 0, 0
for i, rec in ipairs(info) do
  local kind, limit, key = rec.kind, rec.limit, KEYS[i]
  local wait = nil
  if kind == 'r' or kind == 't' then
    rec.tat = get_tat(key)
    rec.n = rate_n(kind, limit, tokens)
    local ahead = math.max(rec.tat, now) + rec.n * PERIOD / limit - now
    if ahead > PERIOD + EPS then wait = ahead - PERIOD end
  elseif kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
    rec.live = redis.call('ZCARD', key)
    if rec.live >= limit then wait = 1 end
  else
    rec.wid, rec.wend = window_at(rec.spec)
    rec.key = key .. ':' .. rec.wid
    rec.spent, rec.held = budget(rec.key)
    if rec.spent + rec.held + tonumber(cost) > limit then wait = rec.wend - now end
  end
  if wait then
    if denied == 0 then denied = i end
    if wait > retry then retry = wait end
  end
end
if denied == 0 then
  for i, rec in ipairs(info) do
    local key = KEYS[i]
    if rec.kind == 'r' or rec.kind == 't' then
      rec.tat = math.max(rec.tat, now) + rec.n * PERIOD / rec.limit
      set_tat(key, rec.tat)
    elseif rec.kind == 'p' then
      rec.live = rec.live + redis.call('ZADD', key, fmt(now + lease), rid)
      local ms = math.ceil(lease * 1000)
      if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
    else
      rec.held = redis.call('HINCRBY', rec.key, 'h', cost)
      redis.call('PEXPIRE', rec.key, math.ceil((rec.wend - now + DAY) * 1000))
    end
  end
end
local states = {}
for i, rec in ipairs(info) do
  if rec.kind == 'r' or rec.kind == 't' then
    states[i] = row(rate_remaining(rec.limit, rec.tat), math.max(0, rec.tat - now), 0, 0, '_')
  elseif rec.kind == 'p' then
    states[i] = row(math.max(0, rec.limit - rec.live), 0, 0, 0, '_')
  else
    local left = math.max(0, rec.limit - rec.spent - rec.held)
    states[i] = row(left, math.max(0, rec.wend - now), rec.spent, rec.held, rec.wid)
  end
end
local admitted = 0
if denied == 0 then admitted = 1 end
return {admitted, denied, fmt(retry), table.concat(states, ';'), feedback}
"""
)

STATES = (
    _COMMON
    + """
-- Read-only. ARGV[1]: the rules (parse_rules; KEYS[i] for the i-th). Returns the states as
-- RESERVE does.
local states = {}
for i, rec in ipairs(parse_rules(ARGV[1])) do
  local kind, limit, key = rec.kind, rec.limit, KEYS[i]
  if kind == 'r' or kind == 't' then
    local tat = get_tat(key)
    states[i] = row(rate_remaining(limit, tat), math.max(0, tat - now), 0, 0, '_')
  elseif kind == 'p' then
    local live = redis.call('ZCOUNT', key, '(' .. fmt(now), '+inf')
    states[i] = row(math.max(0, limit - live), 0, 0, 0, '_')
  else
    local wid, wend = window_at(rec.spec)
    local spent, held = budget(key .. ':' .. wid)
    states[i] = row(math.max(0, limit - spent - held), math.max(0, wend - now), spent, held, wid)
  end
end
return table.concat(states, ';')
"""
)

HEARTBEAT = """
-- KEYS[1]: the replicas' sorted set; ARGV[1]: this replica's id. Returns how many replicas
-- beat in the last 5 seconds (this one included).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - 5))
redis.call('PEXPIRE', KEYS[1], 10000)
return redis.call('ZCARD', KEYS[1])
"""

-- admit.lua: budget admission of one request (budget.c, budget_admit), in
-- one atomic step so that concurrent requests of a tenant cannot all pass a
-- check that only one of them fits: rate limits, then the caps against
-- spent + reserved + this request's estimate, and on admission a lease that
-- reserves the estimate until settle.lua or release.lua gives it back (or,
-- if its tollgate died, the first admit after the lease's expiry does).
-- KEYS[1] month hash  KEYS[2] day hash  KEYS[3] leases zset (id by expiry)
-- KEYS[4] lease hash (id -> lease)  KEYS[5] rpm TAT  KEYS[6] tpm TAT
-- ARGV[1] request id  ARGV[2] now (unix ms)  ARGV[3] lease ttl (ms)
-- ARGV[4] estimate (nano-USD)  ARGV[5] estimate with the downgrade model
-- (-1: no downgrade)  ARGV[6] cap_monthly  ARGV[7] cap_daily
-- ARGV[8] hard_limit (caps: -1 none)  ARGV[9] rpm  ARGV[10] tpm (0: off)
-- ARGV[11] estimated tokens  ARGV[12] the allowance: units included in the
-- period (-1: none)  ARGV[13] this request's estimated units (tokens or 1)
-- ARGV[14] on_allowance overage|block|downgrade  ARGV[15] "1" when
-- on_exceed = downgrade (ARGV[5] may be set for on_allowance alone)
-- The end user's caps (a user's hash field is its id, which holds no space
-- nor "|"): KEYS[7] the month's user cap hash (USER: settled nano-USD,
-- USER|r: reserved), KEYS[8] the user's rpm TAT; ARGV[16] user ("": none),
-- ARGV[17] user_budget_monthly (-1: none), ARGV[18] user_rpm (0: off)
-- Returns {decision, reason, spent_month, reserved_month, spent_day,
-- retry_ms, requests_left, requests_reset_ms, tokens_left, tokens_reset_ms,
-- allowance_used}:
-- decision admit|downgrade|block|rate_limited, reason
-- none|monthly|daily|hard|rpm|tpm|allowance|user|user_rpm, amounts in nano-USD as decimal
-- strings (retry_ms, *_left and *_reset_ms as integers); allowance_used: the month hash's allowance_used +
-- allowance_reserved (units settled and in flight),
-- as they were before this request; retry_ms: the wait until the request
-- would fit (rate limits; at most an hour); *_left and *_reset_ms: the rate limits' state
-- after this request, as OpenAI's x-ratelimit-* headers tell it (-1: no
-- such limit).
--
-- A lease is one field of the tenant's lease hash, "EST CAPPED TOKENS DAY
-- TPM UNITS UCAPPED" (reserved nano-USD, 1 when it reserved only what was
-- left, tokens reserved for tpm or 0, YYYY-MM-DD, the tpm limit they were
-- reserved under or "-", allowance units reserved, 1 when they were only
-- what was left of the allowance; leases from before allowances lack the
-- last two), then " USER" when the user's cap reserved the same amount,
-- so a request costs no key of its own. The month, day and tpm keys it
-- names share KEYS[4]'s "{prefix}{tenant}:" (same hash tag, same cluster
-- slot); they are not in KEYS.
--
-- Rate limits are GCRA (a token bucket kept as one number): the TAT, the
-- theoretical arrival time of the next request in microseconds, moves by
-- 60 s / rpm per request (60 s / tpm per token); a request fits while the
-- TAT stays within a minute of now. A burst of rpm requests passes, then
-- one every 60/rpm seconds, and a refused request learns its exact wait. A field "released" is a tombstone (see
-- release.lua). Both leave with the zset entry, swept here after expiry.
--
-- Cost: about a dozen redis.calls, no type checks (a key of the wrong type
-- is an operator's error and fails the script loudly). Expiries are set
-- when a key is first seen in a period, not on every call.
--
-- Precision: the comparisons add spent + reserved + estimate as Lua numbers
-- (doubles), exact below 2^53 nano-USD (~$9M per tenant-month). Counters are
-- only ever written with decimal strings, so they stay exact beyond that;
-- only a decision that close to a $9M cap could be off by a few nano-USD.
-- The reservation is added to "reserved" only as far as it fits below
-- INT64_MAX (exact, lib/int64.lua), and a TAT stays below 2^53 us, so no
-- write after the first can fail ("increment would overflow").
-- By hand (2026-11-22 12:00:15 UTC, $0.001 estimate, $0.50 monthly cap;
-- scripts/embed-lua.sh --lua src/budget/lua/admit.lua > a.lua):
--   redis-cli --eval a.lua 'tollgate:{acme}:m:2026-11' \
--     'tollgate:{acme}:d:2026-11-22' 'tollgate:{acme}:leases' \
--     'tollgate:{acme}:lease' 'tollgate:{acme}:rpm' \
--     'tollgate:{acme}:tpm' , r1 1795348815000 600000 \
--     1000000 -1 500000000 -1 -1 20 40000 1500 5000000 1500 overage 0

-- #include int64.lua
-- #include lease.lua

-- A lease outlives its ttl this long before Redis forgets the lease hash and
-- zset on their own (a tenant gone quiet): until then a later admit purges
-- an expired lease, giving its reservation back. After 32 days its month is
-- over.
local LEASE_KEEP_MS = 32 * 24 * 3600 * 1000
local MONTH_TTL_S = 34560000 -- as settle.lua: ~400 days
local DAY_TTL_S = 3456000    -- ~40 days
local WINDOW_US = 60000000   -- rate limits are per minute
local SWEEP_MAX = 100        -- expired leases purged per call
local TAT_MAX = 9007199254740992 -- 2^53 us (year 2255): a TAT stays exact
local RETRY_MAX_MS = 3600000     -- a wait past an hour is told as an hour

local id, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local est, down = tonumber(ARGV[4]), tonumber(ARGV[5])
local cap_m, cap_d, hard = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local rpm, tpm, tokens = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local included, est_units, on_allowance = tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14]
local exceed_down = ARGV[15] == '1'
local user, ucap, urpm = ARGV[16] or '', tonumber(ARGV[17]) or -1, tonumber(ARGV[18]) or 0
local base = string.sub(KEYS[4], 1, -6) -- "{prefix}{tenant}:" (KEYS[4] ends in "lease")

-- Gives back the reservation of a lease value (nothing for a tombstone).
local function hincrby(key, field, amount)
    redis.call('HINCRBY', key, field, amount)
end
local function give_back(v)
    lease_give_back(base, v, hincrby)
end

-- "~" (hash field, zset member at +inf) keeps the lease store in being
-- while its leases come and go, so its expiry is set when it is created
-- and refreshed once a minute (its value: the minute of the last refresh),
-- not on every call.
local got = redis.call('HMGET', KEYS[4], id, '~')
local prev, new_store = got[1], not got[2]
local minute = tostring(math.floor(now / 60000))
local refresh = got[2] ~= minute
-- A request released before its admission got here (tollgate gave up
-- waiting and released it): admitting it now would reserve for nothing.
if prev == 'released' then
    return {'block', 'none', '0', '0', '0', '0', '-1', '-1', '-1', '-1', '0'}
end
-- The same id admitted again (a retried admit): its first reservation must
-- not count against it, nor stay counted.
if prev then
    give_back(prev)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
end

-- (a) Leases whose tollgate never settled them, and old tombstones.
-- Bounded per call, so one admit after a mass crash stays short; the next
-- admits take the rest.
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, SWEEP_MAX)
for _, old in ipairs(expired) do
    local v = redis.call('HGET', KEYS[4], old)
    if v then
        give_back(v)
        redis.call('HDEL', KEYS[4], old)
    end
    redis.call('ZREM', KEYS[3], old)
end

local m = redis.call('HMGET', KEYS[1], 'cost', 'reserved', 'capped', 'allowance_used',
    'allowance_reserved', 'allowance_capped')
local capped_in_flight = tonumber(m[3]) or 0
local spent_m_s = m[1] or '0'
local spent_m = tonumber(m[1]) or 0
local res_m = math.max(tonumber(m[2]) or 0, 0) -- below 0 only by a bug; never a credit
local res_m_s = m[2] or '0'
if res_m == 0 then
    res_m_s = '0'
end
-- The allowance, in its units (tokens or requests): settled + in flight.
local a_used = tonumber(m[4]) or 0
local a_res = math.max(tonumber(m[5]) or 0, 0)
local a_capped = tonumber(m[6]) or 0
local a_used_s = string.format('%d', a_used + a_res)
local d = redis.call('HMGET', KEYS[2], 'cost', 'reserved')
local spent_d_s = d[1] or '0'
local spent_d = tonumber(d[1]) or 0
local res_d = math.max(tonumber(d[2]) or 0, 0)
-- The user's own cap, counted like the tenant's month: settled + in flight.
local capped_user = user ~= '' and ucap >= 0
local uh = capped_user and redis.call('HMGET', KEYS[7], user, user .. '|r') or {}
local spent_u = tonumber(uh[1]) or 0
local res_u = math.max(tonumber(uh[2]) or 0, 0)

-- (b) Rate limits (GCRA, see above). Refused requests do not count. A
-- request larger than the whole tpm passes into an empty bucket; otherwise
-- it could never pass at all.
local now_us = now * 1000
local function gcra(key, limit, weight)
    local step = WINDOW_US / limit
    local tat = math.max(tonumber(redis.call('GET', key)) or 0, now_us)
    local after = math.min(tat + step * weight, TAT_MAX)
    local fits
    if weight > limit then
        fits = tat <= now_us
    else
        fits = after - now_us <= WINDOW_US
    end
    if not fits then
        local wait = weight > limit and tat - now_us or after - now_us - WINDOW_US
        return false, tat, math.ceil(wait / 1000),
            math.max(0, math.floor((WINDOW_US - (tat - now_us)) / step)), math.ceil((tat - now_us) / 1000)
    end
    return true, after, 0, math.max(0, math.floor((WINDOW_US - (after - now_us)) / step)),
        math.ceil((after - now_us) / 1000)
end
local rq_ok, rq_tat, rq_wait, rq_left, rq_reset = true, nil, 0, -1, -1
local tk_ok, tk_tat, tk_wait, tk_left, tk_reset = true, nil, 0, -1, -1
if rpm > 0 then
    rq_ok, rq_tat, rq_wait, rq_left, rq_reset = gcra(KEYS[5], rpm, 1)
end
if tpm > 0 then
    tk_ok, tk_tat, tk_wait, tk_left, tk_reset = gcra(KEYS[6], tpm, tokens)
end
-- The waits and the rate limits' state are whole numbers below 2^53, so
-- they leave as Redis integers (no string.format per call).
local function reply(decision, reason, retry_ms)
    return {decision, reason, spent_m_s, res_m_s, spent_d_s, math.min(retry_ms, RETRY_MAX_MS),
            rq_left, rq_reset, tk_left, tk_reset, a_used_s}
end
if not rq_ok then
    return reply('rate_limited', 'rpm', math.max(rq_wait, tk_wait))
end
if not tk_ok then
    return reply('rate_limited', 'tpm', tk_wait)
end
local uq_ok, uq_tat, uq_wait = true, nil, 0
if urpm > 0 and user ~= '' then
    uq_ok, uq_tat, uq_wait = gcra(KEYS[8], urpm, 1)
    if not uq_ok then
        return reply('rate_limited', 'user_rpm', uq_wait)
    end
end

-- (c) Caps: spent + in flight + this estimate. hard_limit bounds every
-- call, downgraded or not. An estimate is an upper bound (output from
-- max_tokens), so a tenant with money left is not refused because the bound
-- is larger than what is left: the request goes ahead reserving what is
-- left, which still stops every concurrent request, and the overspend is at
-- most this one request's error. Only one such short reservation is in
-- flight per tenant at a time (the month hash's "capped"): with two, each
-- could overspend by its own error. Returns the amount to reserve, or nil
-- and the reason when a cap has nothing left.
local function take(amount, caps)
    local r = amount
    for _, c in ipairs(caps) do
        local cap, spent, reserved, why = c[1], c[2], c[3], c[4]
        if cap >= 0 then
            local left = cap - spent - reserved
            if left <= 0 then
                return nil, why
            end
            if left < r then
                if capped_in_flight > 0 then
                    return nil, why
                end
                r = left
            end
        end
    end
    return r
end
local monthly = {cap_m, spent_m, res_m, 'monthly'}
local daily = {cap_d, spent_d, res_d, 'daily'}
local hard_cap = {hard, spent_m, res_m, 'hard'}
local user_cap = {capped_user and ucap or -1, spent_u, res_u, 'user'}

-- The allowance (block and downgrade; overage never refuses): the same
-- rule in units, with its own one short reservation in flight at a time,
-- so concurrent requests overshoot it by at most one estimate's error.
local units, units_capped, over_allowance = 0, false, false
if included >= 0 and on_allowance ~= 'overage' then
    local left = included - a_used - a_res
    if left <= 0 or (left < est_units and a_capped > 0) then
        if on_allowance ~= 'downgrade' or down < 0 then
            return reply('block', 'allowance', 0)
        end
        over_allowance = true
    elseif left < est_units then
        units, units_capped = left, true
    else
        units = est_units
    end
end

local decision, reason = nil, 'none'
local amount, why
if over_allowance then
    amount, why = nil, 'allowance'
else
    amount, why = take(est, {monthly, daily, hard_cap, user_cap})
end
if amount then
    decision = 'admit'
else
    reason = why
    -- Over a cap (or the allowance): the plan's cheaper model, when it has
    -- one for this model, goes ahead while it still fits under the dollar
    -- caps that do not downgrade: hard_limit always; budget_monthly and
    -- budget_daily unless on_exceed = downgrade. Daily overruns downgrade
    -- like monthly ones.
    if down < 0 or reason == 'hard' or (reason ~= 'allowance' and not exceed_down) then
        return reply('block', reason, 0)
    end
    if reason == 'allowance' and not exceed_down then
        amount, why = take(down, {monthly, daily, hard_cap, user_cap})
        if not amount then
            return reply('block', why, 0)
        end
    else
        amount = take(down, {hard_cap})
        if not amount then
            return reply('block', 'hard', 0)
        end
    end
    decision = 'downgrade'
end
-- What is reserved: the estimate as sent (exact), or what was left; never
-- more than "reserved" can still count below INT64_MAX (an absurd estimate
-- on a tenant without caps), so the lease gives back exactly what it took.
local full = decision == 'admit' and est or down
local capped = amount < full
local reserve = capped and string.format('%d', math.min(amount, 2 ^ 53)) or
    (decision == 'admit' and ARGV[4] or ARGV[5])
local raw_m, raw_d = m[2] or '0', d[2] or '0'
if not i64_ok(reserve) or not i64_ok(raw_m) or not i64_ok(raw_d) then
    return redis.error_reply('admit.lua: reserved or estimate is not an integer')
end
-- Below 2^52 each, the reservation always fits (the room is above 2^62):
-- the exact string arithmetic is for counters near the bound.
if not (i64_small(reserve) and i64_small(raw_m) and i64_small(raw_d)) then
    for _, raw in ipairs({raw_m, raw_d}) do
        local room = i64_add(I64_MAX, i64_neg(raw))
        if i64_cmp(room, reserve) < 0 then
            reserve = room
        end
    end
end

-- (d) Count the request and reserve its estimate under a lease. A TAT
-- lives as long as it is ahead of now; a hash or lease store seen for the
-- first time in its period gets its expiry.
if rq_tat then
    redis.call('SET', KEYS[5], string.format('%d', rq_tat), 'PX',
        math.ceil((rq_tat - now_us) / 1000) + 1000)
end
local tlimit = '-'
if tk_tat then
    redis.call('SET', KEYS[6], string.format('%d', tk_tat), 'PX',
        math.ceil((tk_tat - now_us) / 1000) + 1000)
    tlimit = ARGV[10]
end
if uq_tat then
    redis.call('SET', KEYS[8], string.format('%d', uq_tat), 'PX',
        math.ceil((uq_tat - now_us) / 1000) + 1000)
end
redis.call('HINCRBY', KEYS[1], 'reserved', reserve)
redis.call('HINCRBY', KEYS[2], 'reserved', reserve)
if capped_user then
    if not uh[1] and not uh[2] then
        redis.call('EXPIRE', KEYS[7], MONTH_TTL_S)
    end
    redis.call('HINCRBY', KEYS[7], user .. '|r', reserve)
end
if not m[1] and not m[2] then
    redis.call('EXPIRE', KEYS[1], MONTH_TTL_S)
end
if not d[1] and not d[2] then
    redis.call('EXPIRE', KEYS[2], DAY_TTL_S)
end
local day = string.sub(KEYS[2], #base + 3) -- after "d:"
-- a billing period that began in another month than the day (billing_anchor):
-- the lease names its month key as DAY@YYYY-MM, so the give-back finds it
local period = string.sub(KEYS[1], #base + 3) -- after "m:"
if period ~= string.sub(day, 1, 7) then
    day = day .. '@' .. period
end
redis.call('HSET', KEYS[4], id, reserve .. ' ' .. (capped and '1' or '0') .. ' ' ..
    (tpm > 0 and ARGV[11] or '0') .. ' ' .. day .. ' ' .. tlimit .. ' ' ..
    string.format('%d', units) .. ' ' .. (units_capped and '1' or '0') ..
    (capped_user and ' ' .. user or ''))
if capped then
    redis.call('HINCRBY', KEYS[1], 'capped', 1)
end
if units > 0 then
    redis.call('HINCRBY', KEYS[1], 'allowance_reserved', string.format('%d', units))
end
if units_capped then
    redis.call('HINCRBY', KEYS[1], 'allowance_capped', 1)
end
redis.call('ZADD', KEYS[3], now + ttl, id)
if new_store then
    redis.call('ZADD', KEYS[3], '+inf', '~')
end
if refresh then
    redis.call('HSET', KEYS[4], '~', minute)
    redis.call('PEXPIRE', KEYS[3], ttl + LEASE_KEEP_MS)
    redis.call('PEXPIRE', KEYS[4], ttl + LEASE_KEEP_MS)
end
return reply(decision, reason, 0)

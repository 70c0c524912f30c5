-- settle.lua: adds one request's cost (and, in full mode, its tokens and
-- breakdowns) to its tenant's month and day counters, exactly once per
-- settlement, and ends the request's lease from admit.lua: its reservation
-- is given back and its tpm TAT corrected from the estimated tokens to
-- the actual tokens (budget.c, budget_settle).
-- KEYS[1] month hash  KEYS[2] day hash  KEYS[3] leases zset
-- KEYS[4] lease hash (id -> lease, see admit.lua)
-- ARGV[1] request id  ARGV[2] cost (nano-USD)  ARGV[3] actual tokens
-- (input + output)  ARGV[4] connection id  ARGV[5] sequence number
-- ARGV[6] "0": first sending; a replay (journal, retry) of that stamp: "1"
-- when it was first sent in full, "2" when it was sent cost only (so if it
-- ran, the rest never reached the tally and still has to be counted)
-- ARGV[7] "1": full, "0": cost only (the worker's tally adds the rest)
-- ARGV[8] allowance units this request used (tokens or 1; 0: its plan has
-- no allowance)  ARGV[9] units included in the period  ARGV[10] overage
-- nano-USD per million units (0: none)  ARGV[11] overage markup in basis
-- points on the overage's cost (-1: none)
-- Full mode also: ARGV[12] input  ARGV[13] cached  ARGV[14] output
-- ARGV[15] reasoning  ARGV[16] estimated (0|1)  ARGV[17] model
-- ARGV[18] feature  ARGV[19] user ("-" when absent)  ARGV[20] plan (""
-- when unknown)  ARGV[21] day of month "01".."31", and KEYS[5] month by
-- model  KEYS[6] by feature  KEYS[7] by user  KEYS[8] the month's plan per
-- day; ARGV[22] a response cache hit: what it saved (nano-USD), counted in
-- "cache_hits" and "saved"; "" when not a hit; ARGV[23] "1" when the
-- request was recorded "priced": false (counted in "unpriced", its cost in
-- "unpriced_cost"; an estimated one's cost goes to "estimated_cost"), else
-- "0" (absent from older callers). The breakdown hashes have fields NAME|cost, NAME|requests,
-- NAME|input_tokens, NAME|cached_tokens, NAME|output_tokens (HINCRBY only).
-- The allowance is counted with the cost, in the month hash: allowance_used
-- (units), and past the included units overage_units, overage_cost (the AI
-- cost of those units, nano-USD) and overage_usd (what they bill, nano-USD,
-- at the plan's terms when they were used); the day hash also gets
-- overage_units and overage_usd.
-- A lease that names a user (admit.lua: the user's cap reserved with it)
-- moves the user's reservation to its settled cost in the month's user cap
-- hash (KEYS[1]:ucap, fields USER and USER|r), so the user's cap reads
-- exact spend at once, as the tenant's does.
-- Returns 1 when settled now, 0 when this settlement was counted before.
--
-- Exactly once, without a key per request. A settlement is stamped by the
-- connection that first sends it (a random id per connection) with that
-- connection's next sequence number (redis.c, redis_eval_stamped). One
-- connection's commands run in the order sent, and a lost connection ran a
-- prefix of them, so the day hash's field "w:CONN" (the highest sequence
-- settled from CONN) tells whether a stamp ran: seq <= w:CONN. A replay of
-- a stamp that did not run is marked "j:CONN:SEQ" in the day hash, so that
-- a replay lost on its way back is not counted twice either; those markers
-- exist only for settlements that went through the journal.
-- No partial writes: every check comes first (the replay markers, the lease,
-- every counter it changes read and its new value computed exactly, as
-- int64 decimal strings that saturate at INT64_MAX: lib/int64.lua), then the
-- writes, none of which can fail. A counter near INT64_MAX stays there, and
-- the settlement is still counted once with its marker.
-- By hand (scripts/embed-lua.sh --lua src/budget/lua/settle.lua > s.lua):
--   redis-cli --eval s.lua \
--   'tollgate:{acme}:m:2026-11' 'tollgate:{acme}:d:2026-11-22' \
--   'tollgate:{acme}:leases' 'tollgate:{acme}:lease' \
--   'tollgate:{acme}:m:2026-11:model' 'tollgate:{acme}:m:2026-11:feature' \
--   'tollgate:{acme}:m:2026-11:user' 'tollgate:{acme}:m:2026-11:plan' , \
--   r1 405000 1500 c0ffee 1 0 1 1500 5000000 4000000000 -1 1000 200 500 0 0 \
--   gpt-4o-mini summary u_1 pro 22 '' 0

-- #include int64.lua
-- #include lease.lua

local MONTH_TTL_S = 34560000 -- ~400 days, for year-over-year reports
local DAY_TTL_S = 3456000    -- ~40 days
local id, cost, conn, seq = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local base = string.sub(KEYS[4], 1, -6) -- "{prefix}{tenant}:"
local plan = plan_new()

-- (a) Checks and reads; nothing is written until (c).
-- The lease goes on a duplicate too: one left behind must not hold its
-- reservation until it expires. Deleting the field is what makes the
-- give-back happen once.
local lease = redis.call('HGET', KEYS[4], id)
local tpm_key, tpm_new
local ukey, uname -- the user's cap hash and the user, from the lease
if lease then
    local function add(key, field, amount)
        plan_add(plan, key, field, amount)
    end
    local tokens, tpm
    tokens, tpm, ukey, uname = lease_give_back(base, lease, add)
    if tokens then
        tpm_key, tpm_new = lease_tpm_fix(base, tokens, tpm, tonumber(ARGV[3]) or 0)
    else
        lease = nil
    end
end

local count, replay, cost_ran = true, ARGV[6] ~= '0', false
if replay then
    if redis.call('HEXISTS', KEYS[2], 'j:' .. conn .. ':' .. seq) == 1 then
        count = false -- an earlier replay counted it
    else
        local high = tonumber(redis.call('HGET', KEYS[2], 'w:' .. conn)) or 0
        if high >= tonumber(seq) then
            if ARGV[6] ~= '2' then
                count = false -- ran, in full, when first sent
            end
            cost_ran = true -- ran cost only: the rest is counted now
        end
    end
end

-- The allowance: units used, and what of them is past the included units.
-- Units and amounts stay below 2^53 here (a period's tokens, a request's
-- cost), so Lua numbers are exact; they leave through %d.
local function allowance()
    local units = tonumber(ARGV[8]) or 0
    if units <= 0 then
        return
    end
    plan_add(plan, KEYS[1], 'allowance_used', ARGV[8])
    local included = tonumber(ARGV[9]) or -1
    if included < 0 then
        return
    end
    local before = tonumber(redis.call('HGET', KEYS[1], 'allowance_used')) or 0
    local after = before + units
    local over = math.max(after - included, 0) - math.max(before - included, 0)
    if over <= 0 then
        return
    end
    local share = math.floor((tonumber(cost) or 0) * over / units)
    local per_mu, bp = tonumber(ARGV[10]) or 0, tonumber(ARGV[11]) or -1
    local billed = 0
    if bp >= 0 then
        billed = math.floor(share * (10000 + bp) / 10000)
    elseif per_mu > 0 then
        billed = math.floor(over * per_mu / 1000000 + 0.5)
    end
    plan_add(plan, KEYS[1], 'overage_units', string.format('%d', over))
    plan_add(plan, KEYS[1], 'overage_cost', string.format('%d', share))
    plan_add(plan, KEYS[1], 'overage_usd', string.format('%d', billed))
    -- the day's share too: the revenue trend per day and a day's report
    plan_add(plan, KEYS[2], 'overage_units', string.format('%d', over))
    plan_add(plan, KEYS[2], 'overage_usd', string.format('%d', billed))
end

if count and not cost_ran then
    allowance()
    if ukey then
        plan_add(plan, ukey, uname, cost)
    end
end
local fresh = replay
if count and ARGV[7] == '1' then
    for i = 1, 2 do
        local k = KEYS[i]
        if not cost_ran then
            plan_add(plan, k, 'cost', cost)
        end
        plan_add(plan, k, 'requests', 1)
        plan_add(plan, k, 'input_tokens', ARGV[12])
        plan_add(plan, k, 'cached_tokens', ARGV[13])
        plan_add(plan, k, 'output_tokens', ARGV[14])
        plan_add(plan, k, 'reasoning_tokens', ARGV[15])
        if ARGV[16] == '1' then
            plan_add(plan, k, 'estimated', 1)
            if cost ~= '0' then
                plan_add(plan, k, 'estimated_cost', cost)
            end
        end
        if ARGV[23] == '1' then
            plan_add(plan, k, 'unpriced', 1)
            if cost ~= '0' then
                plan_add(plan, k, 'unpriced_cost', cost)
            end
        end
        if ARGV[22] ~= nil and ARGV[22] ~= '' then
            redis.call('HINCRBY', k, 'cache_hits', 1)
            redis.call('HINCRBY', k, 'saved', ARGV[22])
        end
    end
    for i = 5, 7 do
        local k, name = KEYS[i], ARGV[i + 12]
        if name == nil or name == '' then
            name = '-'
        end
        plan_add(plan, k, name .. '|cost', cost)
        plan_add(plan, k, name .. '|requests', 1)
        plan_add(plan, k, name .. '|input_tokens', ARGV[12])
        plan_add(plan, k, name .. '|cached_tokens', ARGV[13])
        plan_add(plan, k, name .. '|output_tokens', ARGV[14])
    end
    if ARGV[20] ~= '' then
        plan_set(plan, KEYS[8], ARGV[21], ARGV[20])
    end
    fresh = true
elseif count then
    plan_add(plan, KEYS[1], 'cost', cost)
    plan_add(plan, KEYS[2], 'cost', cost)
end
-- The stamp's marker goes with the counters, in the same HSET: a
-- connection's first settlement of the day (no w:CONN yet, as plan_check
-- reads it) also sets the expiries.
local stamp_field = nil
if count then
    if replay then
        plan_set(plan, KEYS[2], 'j:' .. conn .. ':' .. seq, '1')
    else
        stamp_field = plan_set(plan, KEYS[2], 'w:' .. conn, seq)
    end
end

-- (b) Every counter's new value, or an error before any write.
local bad = plan_check(plan)
if bad then
    return redis.error_reply('settle.lua: ' .. bad)
end

if stamp_field and not stamp_field.old then
    fresh = true
end

-- (c) The writes: none of them can fail now, but for a leases key of the
-- wrong type (an operator's error, not checked on every call): its ZREM
-- comes last, after the counters and the stamp, so a retry still counts once.
plan_write(plan)
if lease then
    if tpm_key then
        redis.call('SET', tpm_key, tpm_new, 'KEEPTTL')
    end
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
end
if not count then
    return 0
end
if ARGV[7] == '1' then
    for i = 5, 7 do
        redis.call('EXPIRE', KEYS[i], MONTH_TTL_S)
    end
    if ARGV[20] ~= '' then
        redis.call('EXPIRE', KEYS[8], MONTH_TTL_S)
    end
end
if fresh then
    redis.call('EXPIRE', KEYS[1], MONTH_TTL_S)
    redis.call('EXPIRE', KEYS[2], DAY_TTL_S)
end
return 1

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
-- Full mode also: ARGV[8] input  ARGV[9] cached  ARGV[10] output
-- ARGV[11] reasoning  ARGV[12] estimated (0|1)  ARGV[13] model
-- ARGV[14] feature  ARGV[15] user ("-" when absent)  ARGV[16] plan (""
-- when unknown)  ARGV[17] day of month "01".."31", and KEYS[5] month by
-- model  KEYS[6] by feature  KEYS[7] by user  KEYS[8] the month's plan per
-- day. The breakdown hashes have fields NAME|cost, NAME|requests,
-- NAME|input_tokens, NAME|cached_tokens, NAME|output_tokens (HINCRBY only).
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
-- Only HINCRBY touches the counters, with the arguments as strings: numbers
-- that pass through Lua become doubles and lose cents past 2^53 nano-USD.
-- By hand: redis-cli --eval src/budget/lua/settle.lua \
--   'tollgate:{acme}:m:2026-11' 'tollgate:{acme}:d:2026-11-22' \
--   'tollgate:{acme}:leases' 'tollgate:{acme}:lease' \
--   'tollgate:{acme}:m:2026-11:model' 'tollgate:{acme}:m:2026-11:feature' \
--   'tollgate:{acme}:m:2026-11:user' 'tollgate:{acme}:m:2026-11:plan' , \
--   r1 405000 1500 c0ffee 1 0 1 1000 200 500 0 0 gpt-4o-mini summary u_1 pro 22

local MONTH_TTL_S = 34560000 -- ~400 days, for year-over-year reports
local DAY_TTL_S = 3456000    -- ~40 days
local id, cost, conn, seq = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local base = string.sub(KEYS[4], 1, -6) -- "{prefix}{tenant}:"

-- HINCRBY rejects "-0", so amounts are negated as strings.
local function neg(s)
    if s == '0' then
        return '0'
    end
    return '-' .. s
end

-- The lease goes on a duplicate too: one left behind must not hold its
-- reservation until it expires. Deleting the field is what makes the
-- give-back happen once.
local v = redis.call('HGET', KEYS[4], id)
if v then
    local e, capped, tokens, day, tpm = string.match(v, '^(%d+) (%d) (%d+) (%S+) (%S+)$')
    if e then
        local mkey = base .. 'm:' .. string.sub(day, 1, 7)
        redis.call('HINCRBY', mkey, 'reserved', neg(e))
        redis.call('HINCRBY', base .. 'd:' .. day, 'reserved', neg(e))
        if capped == '1' then
            redis.call('HINCRBY', mkey, 'capped', -1)
        end
        -- The tpm TAT moves by what the provider really processed instead of
        -- the estimate (60 s / tpm per token). A TAT already gone has nothing
        -- to correct; a lease from before GCRA ("YYYYMMDDHHMM") is skipped.
        local limit = tonumber(tpm)
        if limit and limit > 0 and limit < 1e11 then
            local tkey = base .. 'tpm'
            local cur = tonumber(redis.call('GET', tkey))
            local delta = ((tonumber(ARGV[3]) or 0) - (tonumber(tokens) or 0)) * 60000000 / limit
            if cur and delta ~= 0 then
                redis.call('SET', tkey, string.format('%d', math.max(cur + delta, 0)), 'KEEPTTL')
            end
        end
        redis.call('HDEL', KEYS[4], id)
        redis.call('ZREM', KEYS[3], id)
    end
end

local fresh, replay, cost_ran = false, ARGV[6] ~= '0', false
if replay then
    if redis.call('HEXISTS', KEYS[2], 'j:' .. conn .. ':' .. seq) == 1 then
        return 0 -- an earlier replay counted it
    end
    local high = tonumber(redis.call('HGET', KEYS[2], 'w:' .. conn)) or 0
    if high >= tonumber(seq) then
        if ARGV[6] ~= '2' then
            return 0 -- ran, in full, when first sent
        end
        cost_ran = true -- ran cost only: the rest is counted now
    end
    fresh = true
end

if ARGV[7] == '1' then
    for i = 1, 2 do
        local k = KEYS[i]
        if not cost_ran then
            redis.call('HINCRBY', k, 'cost', cost)
        end
        redis.call('HINCRBY', k, 'requests', 1)
        redis.call('HINCRBY', k, 'input_tokens', ARGV[8])
        redis.call('HINCRBY', k, 'cached_tokens', ARGV[9])
        redis.call('HINCRBY', k, 'output_tokens', ARGV[10])
        redis.call('HINCRBY', k, 'reasoning_tokens', ARGV[11])
        if ARGV[12] == '1' then
            redis.call('HINCRBY', k, 'estimated', 1)
        end
    end
    for i = 5, 7 do
        local k, name = KEYS[i], ARGV[i + 8]
        if name == nil or name == '' then
            name = '-'
        end
        redis.call('HINCRBY', k, name .. '|cost', cost)
        redis.call('HINCRBY', k, name .. '|requests', 1)
        redis.call('HINCRBY', k, name .. '|input_tokens', ARGV[8])
        redis.call('HINCRBY', k, name .. '|cached_tokens', ARGV[9])
        redis.call('HINCRBY', k, name .. '|output_tokens', ARGV[10])
        redis.call('EXPIRE', k, MONTH_TTL_S)
    end
    if ARGV[16] ~= '' then
        redis.call('HSET', KEYS[8], ARGV[17], ARGV[16])
        redis.call('EXPIRE', KEYS[8], MONTH_TTL_S)
    end
    fresh = true
else
    redis.call('HINCRBY', KEYS[1], 'cost', cost)
    redis.call('HINCRBY', KEYS[2], 'cost', cost)
end
-- Last, so a script that failed above (a key of the wrong type) did not
-- mark the stamp as counted. A connection's first settlement of the day
-- also sets the expiries.
if replay then
    redis.call('HSET', KEYS[2], 'j:' .. conn .. ':' .. seq, '1')
elseif redis.call('HSET', KEYS[2], 'w:' .. conn, seq) == 1 then
    fresh = true
end
if fresh then
    redis.call('EXPIRE', KEYS[1], MONTH_TTL_S)
    redis.call('EXPIRE', KEYS[2], DAY_TTL_S)
end
return 1

-- settle.lua: adds one request's cost and tokens to its tenant's month and
-- day counters, exactly once per request id, and ends the request's lease
-- from admit.lua: its reservation is given back and its minute's tpm bucket
-- corrected from the estimate to the actual tokens (budget.c, budget_settle).
-- KEYS[1] settled marker  KEYS[2] month hash  KEYS[3] day hash
-- KEYS[4] leases zset  KEYS[5] this request's lease hash (4 and 5 optional)
-- ARGV[1] cost (nano-USD)  ARGV[2] input  ARGV[3] cached  ARGV[4] output
-- ARGV[5] reasoning  ARGV[6] estimated (0|1)  ARGV[7] marker TTL (seconds)
-- ARGV[8] actual tokens (input + output)  ARGV[9] request id (optional)
-- Breakdowns for the report (optional; they need KEYS[4..5] and ARGV[9]):
-- KEYS[6] month by model  KEYS[7] by feature  KEYS[8] by user  KEYS[9] the
-- month's plan per day; ARGV[10] model  ARGV[11] feature  ARGV[12] user
-- ("-" when absent)  ARGV[13] plan ("" when unknown)  ARGV[14] day "01".."31".
-- The breakdown hashes have fields NAME|cost, NAME|requests,
-- NAME|input_tokens, NAME|cached_tokens, NAME|output_tokens (HINCRBY only);
-- the plan hash maps the day to the plan of the day's last settlement.
-- Returns 1 when settled now, 0 when this id was settled before.
-- Only HINCRBY touches the counters, with the arguments as strings: numbers
-- that pass through Lua become doubles and lose cents past 2^53 nano-USD.
-- The lease names its month and day hashes and tpm bucket (same hash tag,
-- so same cluster slot); those keys are not in KEYS.
-- By hand: redis-cli --eval src/lua/settle.lua \
--   'tollgate:{acme}:settled:r1' 'tollgate:{acme}:m:2026-11' \
--   'tollgate:{acme}:d:2026-11-22' 'tollgate:{acme}:leases' \
--   'tollgate:{acme}:lease:r1' 'tollgate:{acme}:m:2026-11:model' \
--   'tollgate:{acme}:m:2026-11:feature' 'tollgate:{acme}:m:2026-11:user' \
--   'tollgate:{acme}:m:2026-11:plan' , 405000 1000 200 500 0 0 691200 1500 r1 \
--   gpt-4o-mini summary u_1 pro 22

-- A write that fails after the marker is set would abort the script with the
-- marker kept and the spend lost (a replay would see "settled"): refuse up
-- front any counter key of the wrong type, before anything is written.
for i = 2, #KEYS do
    if i ~= 4 and i ~= 5 then
        local t = redis.call('TYPE', KEYS[i]).ok
        if t ~= 'none' and t ~= 'hash' then
            return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t .. ', not a hash')
        end
    end
end

-- HINCRBY rejects "-0", so amounts are negated as strings.
local function neg(s)
    if s == '0' then
        return '0'
    end
    return '-' .. s
end

-- The lease goes on a duplicate too: one left behind by an earlier settle
-- that did not pass it must not hold its reservation until it expires.
-- Deleting the lease hash is what makes the give-back happen once.
if KEYS[5] then
    local l = redis.call('HMGET', KEYS[5], 'est', 'mkey', 'dkey', 'tkey', 'tokens', 'capped')
    if l[1] then
        redis.call('HINCRBY', l[2], 'reserved', neg(l[1]))
        redis.call('HINCRBY', l[3], 'reserved', neg(l[1]))
        if l[6] == '1' then
            redis.call('HINCRBY', l[2], 'capped', -1)
        end
        -- The bucket is the admission minute's; once it expired there is
        -- nothing to correct (INCRBY would recreate it without a TTL).
        if ARGV[8] and l[4] and redis.call('EXISTS', l[4]) == 1 then
            local cur = tonumber(redis.call('GET', l[4])) or 0
            local delta = (tonumber(ARGV[8]) or 0) - (tonumber(l[5]) or 0)
            if cur + delta < 0 then
                delta = -cur
            end
            if delta ~= 0 then
                redis.call('INCRBY', l[4], string.format('%d', delta))
            end
        end
        redis.call('DEL', KEYS[5])
    end
    if KEYS[4] and ARGV[9] then
        redis.call('ZREM', KEYS[4], ARGV[9])
    end
end

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) then
    return 0
end
for i = 2, 3 do
    local k = KEYS[i]
    redis.call('HINCRBY', k, 'cost', ARGV[1])
    redis.call('HINCRBY', k, 'requests', 1)
    redis.call('HINCRBY', k, 'input_tokens', ARGV[2])
    redis.call('HINCRBY', k, 'cached_tokens', ARGV[3])
    redis.call('HINCRBY', k, 'output_tokens', ARGV[4])
    redis.call('HINCRBY', k, 'reasoning_tokens', ARGV[5])
    if ARGV[6] == '1' then
        redis.call('HINCRBY', k, 'estimated', 1)
    end
end
redis.call('EXPIRE', KEYS[2], 34560000) -- month: ~400 days, for year-over-year reports
redis.call('EXPIRE', KEYS[3], 3456000)  -- day: ~40 days

if KEYS[9] and ARGV[14] then
    for i = 6, 8 do
        local k, name = KEYS[i], ARGV[i + 4]
        if name == nil or name == '' then
            name = '-'
        end
        redis.call('HINCRBY', k, name .. '|cost', ARGV[1])
        redis.call('HINCRBY', k, name .. '|requests', 1)
        redis.call('HINCRBY', k, name .. '|input_tokens', ARGV[2])
        redis.call('HINCRBY', k, name .. '|cached_tokens', ARGV[3])
        redis.call('HINCRBY', k, name .. '|output_tokens', ARGV[4])
        redis.call('EXPIRE', k, 34560000)
    end
    if ARGV[13] and ARGV[13] ~= '' then
        redis.call('HSET', KEYS[9], ARGV[14], ARGV[13])
        redis.call('EXPIRE', KEYS[9], 34560000)
    end
end
return 1

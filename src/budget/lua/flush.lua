-- flush.lua: adds one tenant's summed counters for one month (requests,
-- tokens, breakdowns; tally.c) to their hashes, exactly once per flush.
-- KEYS[1] the month hash (it keeps the flush stamps), KEYS[2..] the other
-- hashes the sums go to (all under the tenant's hash tag).
-- ARGV[1] connection id  ARGV[2] sequence number (the stamp, redis.h)
-- ARGV[3] "1": a replay of that stamp, "0": first sending
-- ARGV[4] one letter per key: "m" expires with the month, "d" with the day
-- ARGV[5..] triples: "iN" (add to KEYS[N]) or "sN" (set in KEYS[N]), field,
-- value.
-- Returns 1 when counted now, 0 when this flush was counted before.
-- Exactly once as settle.lua: w:CONN in the month hash is the highest flush
-- counted from a connection (which runs its commands in order, a prefix of
-- them if it is lost), j:CONN:SEQ marks a flush counted by a replay.
-- No partial writes (as settle.lua): every field is read and its new value
-- computed exactly, saturating at the int64 bounds (lib/int64.lua), before
-- the first write; a value that is not an integer fails the script then.
-- By hand (scripts/embed-lua.sh --lua src/budget/lua/flush.lua > f.lua):
--   redis-cli --eval f.lua \
--     'tollgate:{acme}:m:2026-11' 'tollgate:{acme}:d:2026-11-22' , \
--     c0ffee 1 0 md i1 requests 3 i2 requests 3

-- #include int64.lua

local MONTH_TTL_S = 34560000 -- ~400 days, as settle.lua
local DAY_TTL_S = 3456000    -- ~40 days
local conn, seq = ARGV[1], ARGV[2]
local replay = ARGV[3] == '1'

if replay then
    local high = tonumber(redis.call('HGET', KEYS[1], 'w:' .. conn)) or 0
    if high >= tonumber(seq) then
        return 0
    end
    if redis.call('HEXISTS', KEYS[1], 'j:' .. conn .. ':' .. seq) == 1 then
        return 0
    end
end
local plan = plan_new()
for i = 5, #ARGV - 2, 3 do
    local op, k = string.sub(ARGV[i], 1, 1), tonumber(string.sub(ARGV[i], 2))
    if not k or not KEYS[k] then
        return redis.error_reply('flush.lua: no key ' .. ARGV[i])
    end
    if op == 'i' then
        plan_add(plan, KEYS[k], ARGV[i + 1], ARGV[i + 2])
    else
        plan_set(plan, KEYS[k], ARGV[i + 1], ARGV[i + 2])
    end
end
if replay then
    plan_set(plan, KEYS[1], 'j:' .. conn .. ':' .. seq, '1')
else
    plan_set(plan, KEYS[1], 'w:' .. conn, seq)
end
local bad = plan_check(plan)
if bad then
    return redis.error_reply('flush.lua: ' .. bad)
end
plan_write(plan)
for k = 1, #KEYS do
    local ttl = DAY_TTL_S
    if string.sub(ARGV[4], k, k) == 'm' then
        ttl = MONTH_TTL_S
    end
    redis.call('EXPIRE', KEYS[k], ttl)
end
return 1

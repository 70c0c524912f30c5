-- release.lua: ends the lease of a request that admit.lua admitted but that
-- was never forwarded (or whose settlement is abandoned): its reservation
-- is given back and the tokens it reserved leave its minute's tpm bucket.
-- Nothing is counted as spent (budget.c, budget_release). Idempotent.
-- KEYS[1] leases zset  KEYS[2] this request's lease hash
-- ARGV[1] request id
-- Returns 1 when a lease was released, 0 when there was none.
-- Either way the lease hash is left as a tombstone ("released") for an
-- hour: an admission of the same id that reaches Redis later (it timed out
-- in tollgate, which then refused or served the request) must not reserve.
-- The lease names its month and day hashes and tpm bucket (same hash tag,
-- so same cluster slot); those keys are not in KEYS.
-- By hand: redis-cli --eval src/lua/release.lua \
--   'tollgate:{acme}:leases' 'tollgate:{acme}:lease:r1' , r1

-- HINCRBY rejects "-0", so amounts are negated as strings.
local function neg(s)
    if s == '0' then
        return '0'
    end
    return '-' .. s
end

local TOMBSTONE_S = 3600

local function tombstone()
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], 'released', '1')
    redis.call('EXPIRE', KEYS[2], TOMBSTONE_S)
end

redis.call('ZREM', KEYS[1], ARGV[1])
local l = redis.call('HMGET', KEYS[2], 'est', 'mkey', 'dkey', 'tkey', 'tokens', 'capped')
if not l[1] then
    tombstone()
    return 0
end
redis.call('HINCRBY', l[2], 'reserved', neg(l[1]))
redis.call('HINCRBY', l[3], 'reserved', neg(l[1]))
if l[6] == '1' then
    redis.call('HINCRBY', l[2], 'capped', -1)
end
-- No tokens were used; an expired bucket is left alone (INCRBY would
-- recreate it without a TTL).
if l[4] and redis.call('EXISTS', l[4]) == 1 then
    local cur = tonumber(redis.call('GET', l[4])) or 0
    local take = math.min(cur, tonumber(l[5]) or 0)
    if take > 0 then
        redis.call('INCRBY', l[4], string.format('%d', -take))
    end
end
tombstone()
return 1

-- release.lua: ends the lease of a request that admit.lua admitted but that
-- was never forwarded (or whose settlement is abandoned): its reservation
-- is given back and the tokens it reserved leave the tpm TAT.
-- Nothing is counted as spent (budget.c, budget_release). Idempotent.
-- KEYS[1] leases zset  KEYS[2] lease hash (id -> lease, see admit.lua)
-- ARGV[1] request id  ARGV[2] now (unix ms)
-- Returns 1 when a lease was released, 0 when there was none.
-- Either way the id's field becomes a tombstone ("released") for an hour
-- (its zset score; admit.lua sweeps it): an admission of the same id that
-- reaches Redis later (it timed out in tollgate, which then refused or
-- served the request) must not reserve.
-- By hand: redis-cli --eval src/budget/lua/release.lua \
--   'tollgate:{acme}:leases' 'tollgate:{acme}:lease' , r1 1795348815000

-- #include lease.lua

local TOMBSTONE_MS = 3600 * 1000
local KEEP_MS = 32 * 24 * 3600 * 1000 -- as admit.lua's LEASE_KEEP_MS
local base = string.sub(KEYS[2], 1, -6) -- "{prefix}{tenant}:"

local function hincrby(key, field, amount)
    redis.call('HINCRBY', key, field, amount)
end

local released = 0
local v = redis.call('HGET', KEYS[2], ARGV[1])
local tokens, tpm
if v then
    tokens, tpm = lease_give_back(base, v, hincrby)
end
if tokens then
    -- No tokens were used: the tpm TAT moves back by what was reserved.
    local tkey, tat = lease_tpm_fix(base, tokens, tpm, 0)
    if tkey then
        redis.call('SET', tkey, tat, 'KEEPTTL')
    end
    released = 1
end
redis.call('HSET', KEYS[2], ARGV[1], 'released')
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + TOMBSTONE_MS, ARGV[1])
-- A store created here (no admit yet) still goes when the tenant is quiet.
if redis.call('PTTL', KEYS[2]) < 0 then
    redis.call('PEXPIRE', KEYS[2], TOMBSTONE_MS + KEEP_MS)
end
if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], TOMBSTONE_MS + KEEP_MS)
end
return released

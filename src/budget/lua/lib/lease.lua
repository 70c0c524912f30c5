-- lease.lua: ending a lease (admit.lua writes them; see there for the
-- value "EST CAPPED TOKENS DAY[@PERIOD] TPM UNITS UCAPPED [USER]"), one home for the three
-- scripts that end one: admit.lua (a stale or repeated lease), release.lua
-- and settle.lua. Taken in with "-- #include lease.lua".

local LEASE_TAT_MAX = 9007199254740992 -- 2^53 us (year 2255): a TAT stays exact

-- HINCRBY rejects "-0", so amounts are negated as strings.
local function lease_neg(s)
    if s == '0' then
        return '0'
    end
    return '-' .. s
end

-- Gives back what lease value v reserved, through add(key, field, amount):
-- amount a decimal string or -1; add is an HINCRBY, or settle.lua's plan.
-- base is the tenant's "{prefix}{tenant}:". Returns the lease's reserved
-- tokens and tpm limit (strings), and the user's cap hash and user when
-- the lease names one; nil when v is no lease (a tombstone).
local function lease_give_back(base, v, add)
    local e, capped, tokens, day, tpm, rest = string.match(v, '^(%d+) (%d) (%d+) (%S+) (%S+)(.*)$')
    if not e then
        return nil
    end
    -- DAY@YYYY-MM: the period's month key when it is not the day's month
    local mkey = base .. 'm:' .. string.sub(day, 1, 7)
    local d, period = string.match(day, '^([^@]+)@(.+)$')
    if d then
        day, mkey = d, base .. 'm:' .. period
    end
    add(mkey, 'reserved', lease_neg(e))
    add(base .. 'd:' .. day, 'reserved', lease_neg(e))
    if capped == '1' then
        add(mkey, 'capped', -1)
    end
    -- allowance units reserved (leases from before allowances have none),
    -- then the user whose own cap reserved the same amount (per-user caps)
    local ukey, who
    if rest ~= '' then
        local u, ucapped, user = string.match(rest, '^ (%d+) (%d) ?(%S*)$')
        if u and u ~= '0' then
            add(mkey, 'allowance_reserved', lease_neg(u))
        end
        if ucapped == '1' then
            add(mkey, 'allowance_capped', -1)
        end
        if user and user ~= '' then
            ukey, who = mkey .. ':ucap', user
            add(ukey, who .. '|r', lease_neg(e))
        end
    end
    return tokens, tpm, ukey, who
end

-- The tpm TAT moved by what the provider really processed (used tokens)
-- instead of what the lease reserved (60 s / tpm per token), within
-- [0, 2^53]. Returns the TAT's key and new value to SET ... KEEPTTL, or nil
-- when there is nothing to correct: no tpm limit, the same count, a TAT
-- already gone, or a lease from before GCRA ("YYYYMMDDHHMM").
local function lease_tpm_fix(base, tokens, tpm, used)
    local limit = tonumber(tpm)
    if not limit or limit <= 0 or limit >= 1e11 then
        return nil
    end
    local delta = (used - (tonumber(tokens) or 0)) * 60000000 / limit
    if delta == 0 then
        return nil
    end
    local key = base .. 'tpm'
    local cur = tonumber(redis.call('GET', key))
    if not cur then
        return nil
    end
    return key, string.format('%d', math.min(math.max(cur + delta, 0), LEASE_TAT_MAX))
end

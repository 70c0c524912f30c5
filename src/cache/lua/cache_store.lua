-- cache_store.lua: stores a response cache entry with its TTL and releases
-- the key's single-flight lock if the caller holds it (cache.c). With a fill
-- mark, the entry is stored only while Redis keeps the budget counters safe:
-- maxmemory-policy noeviction (any other may evict the counters, which carry
-- TTLs) and, with a maxmemory, the entry fitting under mark percent of it.
-- KEYS[1] the entry, KEYS[2] its lock (same hash tag)
-- ARGV[1] the entry ("": store nothing, only release)  ARGV[2] TTL in ms
-- ARGV[3] owner (request id)  ARGV[4] fill mark in percent, "0": not checked
-- Returns 1 stored, 0 not (nothing to store, or no room).
-- By hand: redis-cli --eval src/cache/lua/cache_store.lua \
--   'tollgate:{acme}:cache:ab12' 'tollgate:{acme}:cache:ab12:lock' , 'TGC1 ...' 3600000 req1 80
local stored = 0
if ARGV[1] ~= '' then
    local room = true
    local mark = tonumber(ARGV[4]) or 0
    if mark > 0 then
        -- pcall: a user whose ACL denies INFO stores as before
        local info = redis.pcall('INFO', 'memory')
        if type(info) == 'string' then
            local used = tonumber(string.match(info, 'used_memory:(%d+)'))
            local max = tonumber(string.match(info, 'maxmemory:(%d+)'))
            local policy = string.match(info, 'maxmemory_policy:([%a-]+)')
            if policy and policy ~= 'noeviction' then
                room = false
            elseif used and max and max > 0 and used + #ARGV[1] > max / 100 * mark then
                room = false
            end
        end
    end
    if room then
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        stored = 1
    end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
    redis.call('DEL', KEYS[2])
end
return stored

-- cache_lookup.lua: reads a response cache entry; when there is none, takes
-- the key's single-flight lock for the caller (cache.c).
-- KEYS[1] the entry, KEYS[2] its lock (same hash tag)
-- ARGV[1] owner (request id)  ARGV[2] lock lifetime in ms, "0": no lock
-- Returns {1, entry} | {2}: absent, the lock is the caller's | {3}: absent,
-- another request holds the lock | {0}: absent, no lock asked for.
-- By hand: redis-cli --eval src/cache/lua/cache_lookup.lua \
--   'tollgate:{acme}:cache:ab12' 'tollgate:{acme}:cache:ab12:lock' , req1 10000
local v = redis.call('GET', KEYS[1])
if v then
    return {1, v}
end
if ARGV[2] == '0' then
    return {0}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {2}
end
return {3}

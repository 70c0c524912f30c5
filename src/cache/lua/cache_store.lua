-- cache_store.lua: stores a response cache entry with its TTL and releases
-- the key's single-flight lock if the caller holds it (cache.c).
-- KEYS[1] the entry, KEYS[2] its lock (same hash tag)
-- ARGV[1] the entry ("": store nothing, only release)  ARGV[2] TTL in ms
-- ARGV[3] owner (request id)
-- By hand: redis-cli --eval src/cache/lua/cache_store.lua \
--   'tollgate:{acme}:cache:ab12' 'tollgate:{acme}:cache:ab12:lock' , 'TGC1 ...' 3600000 req1
if ARGV[1] ~= '' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
    redis.call('DEL', KEYS[2])
end
return 1

-- settle.lua: adds one request's cost and tokens to its tenant's month and
-- day counters, exactly once per request id (budget.c, budget_settle).
-- KEYS[1] settled marker  KEYS[2] month hash  KEYS[3] day hash
-- ARGV[1] cost (nano-USD)  ARGV[2] input  ARGV[3] cached  ARGV[4] output
-- ARGV[5] reasoning  ARGV[6] estimated (0|1)  ARGV[7] marker TTL (seconds)
-- Returns 1 when settled now, 0 when this id was settled before.
-- Only HINCRBY touches the counters, with the arguments as strings: numbers
-- that pass through Lua become doubles and lose cents past 2^53 nano-USD.
-- By hand: redis-cli --eval src/lua/settle.lua \
--   'tollgate:{acme}:settled:r1' 'tollgate:{acme}:m:2026-11' \
--   'tollgate:{acme}:d:2026-11-22' , 405000 1000 200 500 0 0 691200
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
return 1

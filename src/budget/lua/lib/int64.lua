-- int64.lua: exact int64 arithmetic on decimal strings, saturating at the
-- int64 bounds, for the scripts that write counters (a script takes it in
-- with a line "-- #include int64.lua", expanded by scripts/embed-lua.sh).
-- Why: Redis Lua numbers are doubles, exact only below 2^53, and an HINCRBY
-- past INT64_MAX ("increment or decrement would overflow") fails the script
-- after its earlier writes, which Redis does not roll back. So a script
-- reads every counter it will change, computes each new value here, and
-- writes only once all of them are known: nothing can fail half-way.

local I64_MAX = '9223372036854775807'
local I64_MIN = '-9223372036854775808'
local I64_MIN_MAG = '9223372036854775808'
local EXACT = 4503599627370496 -- 2^52: sums of two smaller doubles are exact

-- True when s is an integer as Redis writes one ("0", "-12"), within int64.
local function i64_ok(s)
    if type(s) ~= 'string' then
        return false
    end
    if s == '0' then
        return true
    end
    local sign, mag = string.match(s, '^(%-?)([1-9]%d*)$')
    if not mag then
        return false
    end
    return #mag < 19 or (#mag == 19 and mag <= (sign == '-' and I64_MIN_MAG or I64_MAX))
end

-- True when s (an i64_ok string) is below 2^52 in magnitude: at most 15
-- digits, so sums of two such stay exact as Lua numbers (the fast paths).
local function i64_small(s)
    return #s <= 16 and (#s <= 15 or string.byte(s, 1) == 45)
end

-- Magnitudes are strings of digits without leading zeros ("0" for zero).
local function mag_cmp(a, b)
    if #a ~= #b then
        return #a < #b and -1 or 1
    end
    if a == b then
        return 0
    end
    return a < b and -1 or 1
end

local function digits_out(out)
    local s = string.reverse(table.concat(out))
    s = string.gsub(s, '^0+', '')
    return s == '' and '0' or s
end

local function mag_add(a, b)
    local out, carry, i, j = {}, 0, #a, #b
    while i > 0 or j > 0 or carry > 0 do
        local d = carry + (i > 0 and string.byte(a, i) - 48 or 0) + (j > 0 and string.byte(b, j) - 48 or 0)
        carry = d >= 10 and 1 or 0
        out[#out + 1] = d % 10
        i, j = i - 1, j - 1
    end
    return digits_out(out)
end

local function mag_sub(a, b) -- a >= b
    local out, borrow, i, j = {}, 0, #a, #b
    while i > 0 do
        local d = string.byte(a, i) - 48 - borrow - (j > 0 and string.byte(b, j) - 48 or 0)
        borrow = d < 0 and 1 or 0
        out[#out + 1] = d < 0 and d + 10 or d
        i, j = i - 1, j - 1
    end
    return digits_out(out)
end

local function split(s)
    if string.sub(s, 1, 1) == '-' then
        return true, string.sub(s, 2)
    end
    return false, s
end

-- a + b of two i64_ok strings, exact, saturating at I64_MAX / I64_MIN.
local function i64_add(a, b)
    local x, y = tonumber(a), tonumber(b)
    if x > -EXACT and x < EXACT and y > -EXACT and y < EXACT then
        return string.format('%d', x + y)
    end
    local na, ma = split(a)
    local nb, mb = split(b)
    local neg, m
    if na == nb then
        neg, m = na, mag_add(ma, mb)
    else
        local c = mag_cmp(ma, mb)
        if c == 0 then
            return '0'
        elseif c > 0 then
            neg, m = na, mag_sub(ma, mb)
        else
            neg, m = nb, mag_sub(mb, ma)
        end
    end
    if neg then
        return mag_cmp(m, I64_MIN_MAG) > 0 and I64_MIN or '-' .. m
    end
    return mag_cmp(m, I64_MAX) > 0 and I64_MAX or m
end

-- -a, saturating (-I64_MIN is I64_MAX).
local function i64_neg(a)
    if a == '0' then
        return '0'
    end
    local n, m = split(a)
    if n then
        return mag_cmp(m, I64_MAX) > 0 and I64_MAX or m
    end
    return '-' .. m
end

-- -1, 0 or 1 as a <, = or > b.
local function i64_cmp(a, b)
    local na, ma = split(a)
    local nb, mb = split(b)
    if na ~= nb then
        return na and -1 or 1
    end
    local c = mag_cmp(ma, mb)
    return na and -c or c
end

-- The number an integer string stands for when it is below 2^52 in
-- magnitude, written as Redis writes one ("0", "-12"); nil otherwise (then
-- the exact path decides). Cheaper than i64_ok plus i64_add: the fast path.
local function i64_small_num(s)
    if s == '0' then
        return 0
    end
    if #s > 16 or not string.find(s, '^%-?[1-9]%d*$') then
        return nil
    end
    local n = tonumber(s)
    if n > -EXACT and n < EXACT then
        return n
    end
    return nil
end

-- A plan of counter writes: add() every change, then check() (reads each
-- field once, fails on a value that is not an int64 before anything was
-- written), then write() (one HSET per key). Several changes to one field
-- add up. A field is a table: its increments at [1..], .set, and after
-- check() .value (what write() writes) and .old (what it held, or nil).
local function plan_new()
    return {keys = {}, order = {}}
end

local function plan_field(p, key, field)
    local k = p.keys[key]
    if not k then
        k = {fields = {}, order = {}}
        p.keys[key] = k
        p.order[#p.order + 1] = key
    end
    local f = k.fields[field]
    if not f then
        f = {}
        k.fields[field] = f
        k.order[#k.order + 1] = field
    end
    return f
end

-- Adds inc (a decimal string, or a number below 2^52 in magnitude) to
-- key's field.
local function plan_add(p, key, field, inc)
    local f = plan_field(p, key, field)
    f[#f + 1] = inc
end

-- Sets key's field to value (after the additions, which it replaces).
-- Returns the field.
local function plan_set(p, key, field, value)
    local f = plan_field(p, key, field)
    f.set = value
    return f
end

-- The new value of v (as read) plus f's increments as Lua numbers, when
-- every one of them and every partial sum stays below 2^52 (exact); nil
-- when the exact path must decide.
local function plan_fast(v, f)
    local n = i64_small_num(v)
    if not n then
        return nil
    end
    for i = 1, #f do
        local inc = f[i]
        if type(inc) ~= 'number' then
            inc = i64_small_num(inc)
            if not inc then
                return nil
            end
        end
        n = n + inc
        if n <= -EXACT or n >= EXACT then
            return nil
        end
    end
    return string.format('%d', n)
end

-- The same, exactly, on decimal strings; nil and a message when v or an
-- increment is no int64.
local function plan_exact(key, name, v, f)
    if not i64_ok(v) then
        return nil, key .. ' ' .. name .. ' holds "' .. tostring(v) .. '", not an integer'
    end
    for i = 1, #f do
        local inc = f[i]
        if type(inc) == 'number' then
            inc = string.format('%d', inc)
        end
        if not i64_ok(inc) then
            return nil, key .. ' ' .. name .. ': increment "' .. tostring(inc) .. '" is not an integer'
        end
        v = i64_add(v, inc)
    end
    return v
end

-- Reads the fields, computes the new values. Returns nil, or an error
-- message naming the field that holds no int64 or the bad increment.
local function plan_check(p)
    for _, key in ipairs(p.order) do
        local k = p.keys[key]
        for i = 1, #k.order, 500 do
            local names = {}
            for j = i, math.min(i + 499, #k.order) do
                names[#names + 1] = k.order[j]
            end
            local got = redis.call('HMGET', key, unpack(names))
            for j, name in ipairs(names) do
                local f = k.fields[name]
                f.old = got[j] or nil
                if f.set then
                    f.value = f.set
                elseif #f > 0 then
                    local v = got[j] or '0'
                    local new = plan_fast(v, f)
                    if not new then
                        local bad
                        new, bad = plan_exact(key, name, v, f)
                        if not new then
                            return bad
                        end
                    end
                    f.value = new
                else
                    f.value = got[j] or '0'
                end
            end
        end
    end
    return nil
end

local function plan_write(p)
    for _, key in ipairs(p.order) do
        local k = p.keys[key]
        local args = {}
        for _, name in ipairs(k.order) do
            args[#args + 1] = name
            args[#args + 1] = k.fields[name].value
            if #args >= 1000 then
                redis.call('HSET', key, unpack(args))
                args = {}
            end
        end
        if #args > 0 then
            redis.call('HSET', key, unpack(args))
        end
    end
end

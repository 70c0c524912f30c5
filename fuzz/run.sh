#!/usr/bin/env bash
# fuzz/run.sh [seconds]: builds and runs tollgate's fuzz targets (fuzz/fuzz_*.c).
#   With clang + libFuzzer: each target is built with -fsanitize=fuzzer,address,undefined
#   into build/fuzz/ and run for `seconds` (default 10) on a copy of its seed corpus
#   fuzz/corpus/<target>/. A crash, leak, timeout or out-of-memory fails the target; the
#   input is saved under build/fuzz/crashes/ and its path printed.
#   Without clang (or FUZZ_NO_LIBFUZZER=1): each target is built with $CC (gcc) and
#   fuzz/driver.c into build/fuzz-replay/ (+ ASan/UBSan if FUZZ_ASAN=1) and replays its
#   corpus once, as a regression test.
# Prints one line per target and ends with exactly one line "N passed, N failed" (targets).
# Exit 0 only when nothing failed and at least one target ran.
# Env: FUZZ_SAVE=1       merge inputs that add coverage into fuzz/corpus/<target>/
#      FUZZ_TARGETS="a b" run only these targets (default: all)
#      FUZZ_JOBS=N       libFuzzer -jobs/-workers per target (default 1)
set -u
cd "$(dirname "$0")/.." || exit 1
seconds=${1:-10}
case "$seconds" in '' | *[!0-9]*) echo "usage: fuzz/run.sh [seconds]" >&2; exit 2 ;; esac

PKGS="libevent libevent_openssl libevent_pthreads openssl hiredis inih jansson"
# Each target links only the modules it exercises.
declare -A MODULES=(
    [sse]="src/http/sse.c"
    [multipart]="src/http/multipart.c"
    [provider]="src/http/sse.c src/http/json_scan.c src/providers/answer.c src/providers/pricing.c src/core/money.c src/core/numtext.c src/core/log.c src/providers/provider.c src/providers/openai.c src/providers/anthropic.c src/providers/gemini.c"
    [http]="src/http/client.c src/core/log.c src/core/numtext.c"
    [pricing]="src/providers/pricing.c src/core/money.c src/core/numtext.c src/http/sse.c src/providers/provider.c src/providers/openai.c src/providers/anthropic.c src/providers/gemini.c"
    [json_scan]="src/http/json_scan.c src/http/sse.c src/providers/pricing.c src/core/money.c src/core/numtext.c src/core/log.c src/providers/provider.c src/providers/openai.c src/providers/anthropic.c src/providers/gemini.c"
    [path]="src/proxy/path.c src/core/percent.c"
    [cloudevent]="src/export/cloudevent.c src/core/log.c"
    [trace]="src/export/trace.c"
    [upstream]="src/http/headers.c src/http/tls.c src/core/log.c"
    [redis_url]="src/redis/redis_url.c src/core/percent.c"
    [redis_slot]="src/redis/redis_slot.c"
    [usage_event]="src/report/usage_event.c src/proxy/trust.c src/http/client.c src/core/config.c src/core/config_values.c src/providers/pricing.c src/core/money.c src/core/numtext.c src/core/log.c src/http/sse.c src/providers/provider.c src/providers/openai.c src/providers/anthropic.c src/providers/gemini.c src/redis/redis_url.c src/redis/redis.c src/redis/redis_cluster.c src/redis/redis_slot.c src/http/tls.c src/core/percent.c"
    [cache_key]="src/cache/cache_key.c src/http/json_scan.c src/http/sse.c src/providers/pricing.c src/core/money.c src/core/numtext.c src/core/log.c src/providers/provider.c src/providers/openai.c src/providers/anthropic.c src/providers/gemini.c"
)
all_targets="sse multipart provider http pricing json_scan path cloudevent trace upstream redis_url redis_slot usage_event cache_key"
targets=${FUZZ_TARGETS:-$all_targets}
WARN="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter"

if ! pkg_c=$(pkg-config --cflags $PKGS) || ! pkg_l=$(pkg-config --libs $PKGS); then
    echo "fuzz: pkg-config cannot find $PKGS (run make deps)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
LIBS="$pkg_l -lhttp_parser -lpthread -lm"

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

libfuzzer=0
if [ -z "${FUZZ_NO_LIBFUZZER:-}" ] && command -v clang >/dev/null 2>&1; then
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }\n' \
        >"$work/probe.c"
    if clang -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>/dev/null; then
        libfuzzer=1
    fi
fi

if [ "$libfuzzer" = 1 ]; then
    out=build/fuzz
    mode="libFuzzer + ASan + UBSan, ${seconds}s per target"
else
    out=build/fuzz-replay
    CC=${CC:-cc}
    [ "$CC" = cc ] && command -v gcc >/dev/null 2>&1 && CC=gcc
    mode="corpus replay with $CC (no libFuzzer)"
    [ -n "${FUZZ_ASAN:-}" ] && mode="$mode + ASan + UBSan"
fi
mkdir -p "$out" build/fuzz/crashes
echo "fuzz: $mode"

passed=0
failed=0
for t in $targets; do
    src=fuzz/fuzz_$t.c
    corpus=fuzz/corpus/$t
    if [ ! -f "$src" ] || [ -z "${MODULES[$t]:-}" ]; then
        echo "fuzz: $t: FAILED (no such target)"
        failed=$((failed + 1))
        continue
    fi
    bin=$out/$t
    log=$work/$t.log
    # ---- build ----
    if [ "$libfuzzer" = 1 ]; then
        build=(clang $WARN -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=all -Isrc $pkg_c "$src" ${MODULES[$t]} -o "$bin" $LIBS)
    else
        san=()
        [ -n "${FUZZ_ASAN:-}" ] && san=(-fsanitize=address,undefined -fno-sanitize-recover=all
            -fno-omit-frame-pointer)
        build=($CC $WARN -g -O1 "${san[@]}" -Isrc $pkg_c "$src" fuzz/driver.c ${MODULES[$t]}
            -o "$bin" $LIBS)
    fi
    if ! "${build[@]}" >"$log" 2>&1; then
        echo "fuzz: $t: FAILED (build)"
        sed 's/^/    /' "$log" | head -40
        failed=$((failed + 1))
        continue
    fi
    # ---- run ----
    if [ "$libfuzzer" = 0 ]; then
        # (the braces keep bash's own "Aborted" line out of the output)
        if { ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
            UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} FUZZ_VERBOSE=1 \
            timeout -k 5 600 "$bin" "$corpus" >"$log" 2>&1; } 2>/dev/null; then
            echo "fuzz: $t: ok ($(grep -Eo '[0-9]+ inputs ok' "$log"))"
            passed=$((passed + 1))
        else
            input=$(grep '^running ' "$log" | tail -1 | sed -E 's/^running (.*) \([0-9]+ bytes\)$/\1/')
            echo "fuzz: $t: FAILED on $input"
            grep -v '^running ' "$log" | tail -n 40 | sed 's/^/    /'
            failed=$((failed + 1))
        fi
        continue
    fi
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    cp "$corpus"/* "$work/$t/corpus/" 2>/dev/null
    nseeds=$(ls "$corpus" 2>/dev/null | wc -l)
    jobs=${FUZZ_JOBS:-1}
    par=()
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    limit=$((seconds > 0 ? seconds : 1))
    runs=()
    [ "$seconds" = 0 ] && runs=(-runs=0) # replay the seeds only
    (cd "$work/$t" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 $((limit * 2 + 120)) "$OLDPWD/$bin" -max_total_time="$limit" "${runs[@]}" \
        -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${par[@]}" \
        -artifact_prefix="$work/$t/artifacts/" corpus) >"$log" 2>&1
    rc=$?
    # with -jobs the output of each worker is in fuzz-N.log
    cat "$work/$t"/fuzz-*.log >>"$log" 2>/dev/null
    artifacts=$(ls "$work/$t/artifacts/" 2>/dev/null)
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' |
        awk '{s += $1} END {print s + 0}')
    if [ "$rc" -eq 0 ] && [ -z "$artifacts" ]; then
        size=$(ls "$work/$t/corpus" | wc -l)
        echo "fuzz: $t: ok ($execs runs, corpus $nseeds seeds -> $size)"
        passed=$((passed + 1))
        if [ -n "${FUZZ_SAVE:-}" ]; then
            "$bin" -merge=1 "$corpus" "$work/$t/corpus" >"$log.merge" 2>&1 &&
                echo "fuzz: $t: merged into $corpus ($(ls "$corpus" | wc -l) files)"
        fi
        continue
    fi
    failed=$((failed + 1))
    if [ -z "$artifacts" ]; then
        echo "fuzz: $t: FAILED (exit $rc, no input saved)"
        tail -n 40 "$log" | sed 's/^/    /'
        continue
    fi
    for a in $artifacts; do
        cp "$work/$t/artifacts/$a" "build/fuzz/crashes/$t-$a"
        echo "fuzz: $t: FAILED ($a): input saved as build/fuzz/crashes/$t-$a"
        echo "    replay: $bin build/fuzz/crashes/$t-$a"
    done
    # the report, with the stack frames in tollgate's own code
    grep -E 'ERROR: |invariant|SUMMARY|runtime error|^ +#[0-9]+ .* [^ ]*(src|fuzz)/[^ ]+\.c:[0-9]+' "$log" |
        head -n 30 | sed 's/^/    /'
done

echo "$passed passed, $failed failed"
if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then exit 0; fi
exit 1

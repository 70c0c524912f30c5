#!/usr/bin/env bash
# Runs every test of tollgate against $TOLLGATE_BUILD (default build/release):
#   1. tests/setup.sh (node >= 20, npm packages)
#   2. every $TOLLGATE_BUILD/unit/test_* binary (each ends with "N passed, N failed";
#      a crash, a missing summary or a non-zero exit counts as a failure of that binary)
#   3. node --test tests/integration/*.test.js, one file at a time, under an overall timeout
# Prints a summary per part and ends with exactly one line "N passed, N failed" (the sum).
# Exit 0 only when nothing failed and at least one test ran.
# Env: TESTS=substring  run only unit binaries / integration tests whose name contains it
#      TOLLGATE_INTEGRATION_TIMEOUT=seconds (default 900), TOLLGATE_UNIT_TIMEOUT (default 300)
#      TOLLGATE_TEST_TIMEOUT_SCALE=N  stretch every deadline in the harness
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${TOLLGATE_BUILD:-build/release}
export TOLLGATE_BUILD=$BUILD
filter=${TESTS:-}
passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

finish() {
    echo "$passed passed, $failed failed"
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then exit 0; fi
    exit 1
}

# ---- 1. setup ----------------------------------------------------------------------------
if ! node=$(tests/setup.sh); then
    echo "run: tests/setup.sh failed; integration tests cannot run" >&2
    node=""
fi

# ---- 2. unit tests -----------------------------------------------------------------------
u_pass=0
u_fail=0
u_bins=0
for bin in "$BUILD"/unit/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    case "$name" in *.d | *.o) continue ;; esac
    if [ -n "$filter" ] && [[ $name != *"$filter"* ]]; then continue; fi
    u_bins=$((u_bins + 1))
    out=$work/$name.out
    timeout -k 5 "${TOLLGATE_UNIT_TIMEOUT:-300}" "$bin" >"$out" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    p=0
    f=0
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    fi
    if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
        [ "$f" -eq 0 ] && f=1
    fi
    u_pass=$((u_pass + p))
    u_fail=$((u_fail + f))
    if [ "$f" -ne 0 ]; then
        echo "unit: $name FAILED (exit $rc, ${line:-no summary line})"
        tail -n 40 "$out" | sed 's/^/    /'
    else
        echo "unit: $name: $p passed"
    fi
done
echo "unit summary: $u_bins binaries, $u_pass passed, $u_fail failed"
passed=$((passed + u_pass))
failed=$((failed + u_fail))

# ---- 2b. fuzz targets: seed corpora as a regression test, a few seconds of fuzzing with clang
if [ -z "$filter" ] || [[ fuzz == *"$filter"* ]]; then
    fuzz/run.sh "${TOLLGATE_FUZZ_SECONDS:-3}" >"$work/fuzz.out" 2>&1
    line=$(tail -1 "$work/fuzz.out")
    fp=$(echo "$line" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p')
    ff=$(echo "$line" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p')
    [ -z "$fp" ] && fp=0 && ff=1
    if [ "$ff" -ne 0 ]; then sed 's/^/    /' "$work/fuzz.out" | tail -n 60; else grep '^fuzz: ' "$work/fuzz.out"; fi
    echo "fuzz summary: $fp passed, $ff failed"
    passed=$((passed + fp))
    failed=$((failed + ff))
fi

# ---- 3. integration tests ----------------------------------------------------------------
shopt -s nullglob
files=(tests/integration/*.test.js tests/deploy/*.test.js)
if [ -z "$node" ]; then
    echo "integration summary: not run (no node), counted as 1 failed"
    failed=$((failed + 1))
    finish
fi
if [ ${#files[@]} -eq 0 ]; then
    echo "integration summary: no test files"
    finish
fi
args=(--test --test-concurrency=1 --test-timeout=180000
    --test-reporter=spec --test-reporter-destination=stdout
    --test-reporter=tap --test-reporter-destination="$work/integration.tap")
if [ -n "$filter" ]; then
    # --test-name-pattern is a regular expression; escape the substring.
    pat=$(printf '%s' "$filter" | sed -e 's/[][\.*^$?+(){}|/]/\\&/g')
    args+=(--test-name-pattern="$pat")
fi
# Own process group, so every process the tests started can be ended if the run times out.
setsid "$node" "${args[@]}" "${files[@]}" &
pid=$!
limit=${TOLLGATE_INTEGRATION_TIMEOUT:-900}
deadline=$((SECONDS + limit))
while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "run: integration tests exceeded ${limit}s, stopping them" >&2
        kill -TERM -- -"$pid" 2>/dev/null
        sleep 10
        kill -KILL -- -"$pid" 2>/dev/null
        break
    fi
    sleep 1
done
wait "$pid"
rc=$?
kill -KILL -- -"$pid" 2>/dev/null # leftovers of this run's process group only

tap=$work/integration.tap
count() { grep -E "^# $1 [0-9]+$" "$tap" 2>/dev/null | tail -1 | awk '{print $3}'; }
i_pass=$(count pass)
i_fail=$(count fail)
i_cancel=$(count cancelled)
i_skip=$(count skipped)
i_pass=${i_pass:-0}
i_fail=$((${i_fail:-0} + ${i_cancel:-0}))
if [ -z "$(count tests)" ]; then
    echo "integration: the runner printed no summary (exit $rc); counted as 1 failed"
    i_fail=$((i_fail + 1))
elif [ "$rc" -ne 0 ] && [ "$i_fail" -eq 0 ]; then
    echo "integration: the runner exited $rc with no failed test (hook or file failure); counted as 1 failed"
    grep -E '^not ok|# Subtest|error:' "$tap" | head -20 | sed 's/^/    /'
    i_fail=1
fi
echo "integration summary: ${#files[@]} files, $i_pass passed, $i_fail failed, ${i_skip:-0} skipped"
passed=$((passed + i_pass))
failed=$((failed + i_fail))
finish

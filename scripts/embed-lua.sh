#!/bin/sh
# Emits a C file with each Lua script as a string: lua_NAME.
echo '/* generated from src/lua by scripts/embed-lua.sh */'
for f in "$@"; do
    name=$(basename "$f" .lua)
    printf 'const char lua_%s[] =\n' "$name"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
    printf ';\n'
done

#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UBSan into build-asan/ (the normal build/ is untouched) and runs the vitest
# suite against it. What `npm run test:asan` calls.
#
#   scripts/test-asan.sh                  build (incrementally) + the whole suite
#   scripts/test-asan.sh --quick          build + the CI subset (the native boundary: fuzz, bad input, numerics, async)
#   scripts/test-asan.sh --build-only     just build build-asan/build/Release/attnode.node
#   scripts/test-asan.sh -- <vitest args> build + vitest with these arguments (e.g. a single file)
#
# How it works:
# - Sources, defines and include dirs come from native/build-config.json via scripts/build-config.js, like
#   binding.gyp and CMakeLists.txt; only the optimisation and sanitizer flags differ (-O1 -g, no -O3). It compiles with
#   g++ directly (no node-gyp): node-gyp always writes to ./build, which must stay the tests' normal build.
# - node-gyp-build honours <PACKAGE>_PREBUILD: ATTNODE_PREBUILD=build-asan makes lib/backend/native.ts load
#   build-asan/build/Release/attnode.node with no change to the library.
# - Node itself is not instrumented, so libasan must be the first library in the process: LD_PRELOAD. Node's own
#   allocations are never freed at exit, hence detect_leaks=0 (LSan would report V8's heap, not ours). Leaks of the
#   addon are covered by scripts/soak.ts (RSS over 100k calls) and by native/tests under LSan.
# - UBSan halts on the first report (-fno-sanitize-recover) so a finding fails the run instead of scrolling by.
# - info().build.asan is true in this build; test/fuzz-native.test.ts asserts it when ATTNODE_EXPECT_ASAN=1, so
#   the suite cannot silently run against the unsanitized addon.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/build-asan"
OBJ="$OUT/obj"
TARGET="$OUT/build/Release/attnode.node"
CXX="${CXX:-g++}"
JOBS="${JOBS:-$(nproc)}"

mode=full
vitest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) mode=quick ;;
    --build-only) mode=build ;;
    --) shift; vitest_args=("$@"); break ;;
    *) echo "usage: $0 [--quick | --build-only | -- <vitest args>]" >&2; exit 2 ;;
  esac
  shift
done

mapfile -t SOURCES < <(node scripts/build-config.js sources)
mapfile -t DEFINES < <(node scripts/build-config.js defines)
NAPI_INCLUDE="$(node scripts/build-config.js include)"
# Node's headers: the ones beside this node binary (Debian: /usr/include/node), else node-gyp's cache.
NODE_INCLUDE="$(dirname "$(dirname "$(command -v node)")")/include/node"
if [[ ! -f "$NODE_INCLUDE/node_api.h" ]]; then
  NODE_INCLUDE="$(ls -d "$HOME"/.cache/node-gyp/"$(node -p process.versions.node)"/include/node 2>/dev/null | head -1)"
fi
[[ -f "$NODE_INCLUDE/node_api.h" ]] || { echo "test-asan: node_api.h not found (install node headers)" >&2; exit 1; }

# build-config.json's flags minus the optimisation level, plus the sanitizers.
mapfile -t CFG_FLAGS < <(node scripts/build-config.js cflags | grep -v '^-O')
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
CXXFLAGS=(-fPIC -fexceptions "${CFG_FLAGS[@]}" -O1 -g "${SAN[@]}" "${DEFINES[@]/#/-D}" -DBUILDING_NODE_EXTENSION
  -I "$NAPI_INCLUDE" -I "$NODE_INCLUDE" -I native)
FLAGS_STAMP="$(printf '%s\n' "$CXX" "${CXXFLAGS[@]}" | sha1sum | cut -c1-12)"

build() {
  mkdir -p "$OBJ" "$(dirname "$TARGET")"
  # A flag change rebuilds everything; otherwise only sources (or any header) newer than their object.
  if [[ "$(cat "$OBJ/.flags" 2>/dev/null)" != "$FLAGS_STAMP" ]]; then rm -f "$OBJ"/*.o; fi
  local newest_header
  newest_header="$(find native -name '*.h' -printf '%T@\n' | sort -n | tail -1)"
  local todo=()
  for src in "${SOURCES[@]}"; do
    local o="$OBJ/$(echo "$src" | tr / _).o"
    if [[ ! -f "$o" || "$src" -nt "$o" ]] || awk -v h="$newest_header" -v o="$(stat -c %Y "$o")" 'BEGIN{exit !(h>o)}'; then
      todo+=("$src")
    fi
  done
  if [[ ${#todo[@]} -gt 0 ]]; then
    echo "test-asan: compiling ${#todo[@]} of ${#SOURCES[@]} sources (-O1 -g, ASan+UBSan, $JOBS jobs)"
    export CXX
    printf '%s\n' "${todo[@]}" | xargs -P "$JOBS" -I{} bash -c \
      'src="$1"; o="$0/$(echo "$src" | tr / _).o"; shift; "$CXX" "$@" -c "$src" -o "$o" || exit 255' "$OBJ" {} "${CXXFLAGS[@]}"
    echo "$FLAGS_STAMP" > "$OBJ/.flags"
  fi
  local objs=()
  for src in "${SOURCES[@]}"; do objs+=("$OBJ/$(echo "$src" | tr / _).o"); done
  if [[ ! -f "$TARGET" ]] || [[ -n "$(find "${objs[@]}" -newer "$TARGET" 2>/dev/null)" ]]; then
    "$CXX" -shared -pthread "${SAN[@]}" "${objs[@]}" -o "$TARGET"
    echo "test-asan: built ${TARGET#"$ROOT"/}"
  fi
}

build
[[ "$mode" == build ]] && exit 0

LIBASAN="$("$CXX" -print-file-name=libasan.so)"
[[ -f "$LIBASAN" ]] || { echo "test-asan: libasan.so not found for $CXX" >&2; exit 1; }
export LD_PRELOAD="$LIBASAN"
export ATTNODE_PREBUILD="$OUT"
export ATTNODE_EXPECT_ASAN=1
# detect_leaks=0: see above. abort_on_error makes a report kill the worker visibly; V8 uses its own signal handlers.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1:handle_segv=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Findings go to stderr and to build-asan/asan.<pid> logs; the logs decide pass/fail (a report printed in a vitest
# worker could otherwise be swallowed as "worker exited").
rm -f "$OUT"/asan.* "$OUT"/ubsan.*
export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$OUT/asan"
export UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$OUT/ubsan"

if [[ ${#vitest_args[@]} -eq 0 ]]; then
  if [[ "$mode" == quick ]]; then
    # The CI subset: everything that crosses the native boundary with hostile or edge-case input.
    vitest_args=(run test/fuzz-native.test.ts test/fuzz-optim.test.ts test/bad-input.test.ts test/numerics.test.ts test/async.test.ts
      test/native.test.ts test/decode-program.test.ts)
  else
    vitest_args=(run)
  fi
fi
start=$(date +%s)
set +e
npx vitest "${vitest_args[@]}"
status=$?
set -e
echo "test-asan: vitest exited $status after $(( $(date +%s) - start )) s"
shopt -s nullglob
reports=("$OUT"/asan.* "$OUT"/ubsan.*)
if [[ ${#reports[@]} -gt 0 ]]; then
  echo "test-asan: sanitizer reports:" >&2
  for r in "${reports[@]}"; do echo "== $r" >&2; cat "$r" >&2; done
  exit 1
fi
[[ $status -eq 0 ]] && echo "test-asan: clean (no ASan/UBSan reports)"
exit $status

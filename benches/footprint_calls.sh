#!/usr/bin/env bash
# What each call costs in the footprint example: builds examples/footprint.rs
# whole and once without each `// [name]` ... `// [/name]` block (size
# profile, the given features), and prints the bytes each block adds.
#
#   benches/footprint_calls.sh                          # no TLS (default here)
#   FEATURES="" benches/footprint_calls.sh              # default features (tls)
#   benches/footprint_calls.sh --no-default-features    # same as the first
#
# The variants are built as examples of this crate from a scratch copy under
# target/, so the repository is never modified.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
args=("$@")
if [ ${#args[@]} -eq 0 ] && [ -z "${FEATURES+x}" ]; then args=(--no-default-features); fi
work="$root/target/footprint-calls"
mkdir -p "$work"
src="$root/examples/footprint.rs"
blocks=$(grep -E '^\s*// \[[a-z_]+\]$' "$src" | sed 's#.*// \[\(.*\)\]#\1#')
variants=(full)
cp "$src" "$root/examples/zz_footprint_full.rs"
trap 'rm -f "$root"/examples/zz_footprint_*.rs' EXIT
for b in $blocks; do
  awk -v b="$b" '
    $0 ~ "// \\[" b "\\]" { skip = 1; next }
    $0 ~ "// \\[/" b "\\]" { skip = 0; next }
    !skip' "$src" > "$root/examples/zz_footprint_no_$b.rs"
  variants+=("no_$b")
done
size_of() {
  (cd "$root" && CARGO_TARGET_DIR="$work" cargo build -q --profile size --example "zz_footprint_$1" "${args[@]}" 2>/dev/null)
  stat -c %s "$work/size/examples/zz_footprint_$1"
}
full=$(size_of full)
printf '%-14s %10s %12s\n' "without" "stripped B" "call costs B"
printf '%-14s %10d %12s\n' "(nothing)" "$full" "-"
for b in $blocks; do
  s=$(size_of "no_$b")
  printf '%-14s %10d %12d\n' "$b" "$s" "$((full - s))"
done
echo "features: ${args[*]:-default}; machine: $(nproc) cores, $(uname -m), $(rustc --version)"

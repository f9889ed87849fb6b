#!/usr/bin/env bash
# Footprint of pubnub-presence, measured side by side with a baseline that
# does one GET with the same ureq + rustls configuration.
#
#   benches/footprint.sh            # prints a table; takes a few minutes (clean builds)
#
# Size profile: opt-level "z", lto, codegen-units 1, panic abort, strip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${FOOTPRINT_TARGET:-$root/target/footprint}"
rm -rf "$work"
mkdir -p "$work"

build() { # dir target-subdir extra-args... ; prints seconds
  local dir=$1 sub=$2; shift 2
  local t0 t1
  t0=$(date +%s%N)
  (cd "$dir" && CARGO_TARGET_DIR="$work/$sub" cargo build -q --profile size "$@")
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
size_of() { stat -c %s "$1"; }
crates() { # dir args...
  local dir=$1; shift
  (cd "$dir" && cargo tree -q -e normal --prefix none "$@" | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l)
}

printf '%-34s %12s %10s %8s %10s\n' "build" "stripped B" "ours B" "crates" "clean ms"
for variant in tls notls; do
  if [ $variant = tls ]; then args=(); else args=(--no-default-features); fi
  tb=$(build "$root/benches/baseline" "base-$variant" "${args[@]}")
  tq=$(build "$root/benches/baseline-proto" "proto-$variant" "${args[@]}")
  tp=$(build "$root" "pres-$variant" --example footprint "${args[@]}")
  sb=$(size_of "$work/base-$variant/size/footprint-baseline")
  sq=$(size_of "$work/proto-$variant/size/footprint-baseline-proto")
  sp=$(size_of "$work/pres-$variant/size/examples/footprint")
  cb=$(crates "$root/benches/baseline" "${args[@]}")
  cq=$(crates "$root/benches/baseline-proto" "${args[@]}")
  cp=$(crates "$root" "${args[@]}")
  printf '%-34s %12d %10s %8d %10d\n' "baseline one GET ($variant)" "$sb" "-" "$cb" "$tb"
  printf '%-34s %12d %10s %8d %10d\n' "baseline-proto one GET ($variant)" "$sq" "-" "$cq" "$tq"
  printf '%-34s %12d %10d %8d %10d\n' "footprint example ($variant)" "$sp" "$((sp - sb))" "$cp" "$tp"
  printf '%-34s %12s %10d\n' "  over baseline-proto ($variant)" "" "$((sp - sq))"
done
echo
echo "crates: cargo tree -e normal, unique packages including the root crate"
echo "ours B: stripped size minus the baseline's (one GET through ureq's agent + rustls)"
echo "over baseline-proto: minus one GET through ureq-proto + std sockets + rustls,"
echo "  the layers this crate links since its calls left ureq's agent (like for like)"
echo "machine: $(nproc) cores, $(uname -m), $(rustc --version)"

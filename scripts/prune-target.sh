#!/usr/bin/env bash
# Keeps cargo's shared target dir from filling the disk. Every clone at a new path builds
# its test, bench and fuzz executables under new hashes (100–800 MB each, the fuzz ones
# with AddressSanitizer), and cargo never deletes the old ones: a machine that ran CI from
# a few clone paths had 40 GB of them and a full disk. Executables are leaves (nothing
# links against them), so deleting a stale one costs at most one relink.
#
# Keeps the newest KEEP (default 4: a bin and its unit-test harness, for two clone paths)
# executables of each name in every deps/ folder under the target dir; libraries are left
# alone (several versions of one crate may be in use at once).
# Usage: scripts/prune-target.sh [TARGET_DIR]   (default $CARGO_TARGET_DIR)
set -euo pipefail
dir="${1:-${CARGO_TARGET_DIR:?set CARGO_TARGET_DIR or pass the target dir}}"
keep="${KEEP:-4}"
[[ -d "$dir" ]] || exit 0
freed=0
declare -A seen=()
while IFS= read -r deps; do
  # newest first; group by the name before the 16-hex-digit hash
  while IFS=$'\t' read -r _ size path; do
    name="$(basename "$path")"; name="${name%-*}"
    n=$(( ${seen[$deps/$name]:-0} + 1 )); seen[$deps/$name]=$n
    if (( n > keep )); then rm -f -- "$path"; freed=$(( freed + size )); fi
  done < <(find "$deps" -maxdepth 1 -type f -perm -u+x -regextype posix-extended \
             -regex '.*-[0-9a-f]{16}' -printf '%T@\t%s\t%p\n' | sort -rn)
done < <(find "$dir" -type d -name deps)
echo "[prune-target] freed $(( freed / 1024 / 1024 )) MiB of stale executables under $dir"

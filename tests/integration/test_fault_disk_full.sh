#!/usr/bin/env bash
# Disk full (issue 17, faults under load): a cirrus-shard whose --dir is on a small file
# system (a 32 MiB tmpfs, or an ext4 loop device with CIRRUS_DISKFULL_FS=loop) that a filler
# file fills up while `cirrus load --acked` writes:
#   - the load stops with a clear storage error naming the full disk (no crash, no hang);
#   - reads (get, search, verify) keep working, also after a SIGKILL + restart on the full disk;
#   - a snapshot on the full disk fails clearly and the old snapshot stays the one loaded;
#   - once the filler is deleted, writes succeed again;
#   - after a final SIGKILL + restart every acknowledged id is there byte for byte and the
#     count is exactly the acknowledged ones;
# and the same through `cirrus serve --http`: a batch POST /v1/items on the full disk is
# answered with the store's message (not "unavailable, retry"), searches keep answering.
# Runs in a private mount namespace (unshare -m) so that no mount outlives the test; skips
# (77) where no small file system can be mounted.
if [ -z "${CIRRUS_DISKFULL_NS:-}" ]; then
  export CIRRUS_DISKFULL_NS=1
  if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
    exec unshare -m --propagation private bash "$0" "$@"
  elif unshare -rm --propagation private true 2>/dev/null; then
    exec unshare -rm --propagation private bash "$0" "$@"
  fi
fi
. "$(dirname "$0")/lib.sh"

mnt="$WORK/fs"
mkdir -p "$mnt"
disk_cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  umount "$mnt" 2>/dev/null || true
  cleanup
}
trap disk_cleanup EXIT

kind=${CIRRUS_DISKFULL_FS:-tmpfs}
if [ "$kind" = tmpfs ] && mount -t tmpfs -o size=32m tmpfs "$mnt" 2>/dev/null; then
  :
elif command -v mkfs.ext4 >/dev/null && truncate -s 32M "$WORK/disk.img" &&
  mkfs.ext4 -q -F -m 0 "$WORK/disk.img" >/dev/null 2>&1 &&
  mount -o loop "$WORK/disk.img" "$mnt" 2>/dev/null; then
  kind=loop
else
  echo "SKIP: cannot mount a small file system here (tmpfs, or an ext4 loop device): needs"
  echo "root or user namespaces with mount rights"
  exit 77
fi
note "a $kind of $(df -k --output=size "$mnt" | tail -1) KiB at $mnt"

# fill [KIB]: a filler file takes all the free space but KIB KiB (each call adds one).
nfill=0
fill() {
  local keep=${1:-0} avail
  avail=$(df -k --output=avail "$mnt" | tail -1)
  nfill=$((nfill + 1))
  [ "$avail" -gt "$keep" ] || return 0
  fallocate -l $(((avail - keep) * 1024)) "$mnt/filler$nfill" 2>/dev/null ||
    dd if=/dev/zero of="$mnt/filler$nfill" bs=1k count=$((avail - keep)) 2>/dev/null || true
}
free_all() { rm -f "$mnt"/filler*; }
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

"$BIN/cirrus-bench" gen --n 30000 --dim 64 --queries 1 --out "$WORK/v.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
ep="tcp://127.0.0.1:$(free_port)"
dir="$mnt/s"
C=("$BIN/cirrus" --endpoint "$ep")
start_shard() {
  start_bg "$WORK/shard$1.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$ep" "${@:2}" \
    --log-level info
  spid=$LAST_PID
  wait_ready "$ep"
}
verify_all() { # every acknowledged id of every load so far, byte for byte
  local p out
  for p in "$@"; do
    out=$("${C[@]}" verify --vectors "$WORK/v.fvecs" --id-prefix "$p" --acked "$WORK/acked-$p" 2>&1) ||
      fail "verify $p: $out"
    [ "$out" = "verified $(lines "$WORK/acked-$p") of $(lines "$WORK/acked-$p")" ] ||
      fail "verify $p: $out"
  done
}
count() { "${C[@]}" --json stats | grep -o '"count":[0-9]*' | cut -d: -f2; }

note "a shard on the small file system, 3000 acknowledged writes and a snapshot"
start_shard 1 --create --dim 64 --index Flat
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix a --limit 3000 --acked "$WORK/acked-a" \
  >/dev/null 2>&1 || fail "first load"
[ "$(lines "$WORK/acked-a")" = 3000 ] || fail "first load acked $(lines "$WORK/acked-a")"
"${C[@]}" snapshot >/dev/null || fail "snapshot with room"
snap_sum=$(cksum <"$dir/index.snap")

note "the disk fills up (256 KiB left) under a load of 20000 rows"
fill 256
out=$("${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix b --limit 20000 \
  --acked "$WORK/acked-b" 2>&1) && fail "a load of 20000 rows into 256 KiB succeeded: $out"
echo "$out" | grep -q "no space left on device" || fail "load error does not name the full disk: $out"
echo "  refused: $(echo "$out" | grep -m1 "no space")"
nb=$(lines "$WORK/acked-b")
[ "$nb" -lt 20000 ] || fail "all 20000 acknowledged on a full disk"
kill -0 "$spid" 2>/dev/null || fail "the shard died on a full disk"
grep -q "ERROR shard write refused .*no space left on device" "$WORK/shard1.log" ||
  fail "the shard did not log the refused write: $(tail -3 "$WORK/shard1.log")"
note "$nb of 20000 acknowledged before the disk was full"

note "reads keep working on the full disk"
fill 0
verify_all a b
vec=$("${C[@]}" --json get --id a17 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
"${C[@]}" --json search --vector "$vec" -k 5 | grep -q '"id":"a17"' || fail "search on the full disk"
[ "$(count)" = $((3000 + nb)) ] || fail "count $(count), expected $((3000 + nb))"

note "a snapshot on the full disk fails clearly; the old one stays"
expect_error "No space left on device" "${C[@]}" snapshot
[ "$(cksum <"$dir/index.snap")" = "$snap_sum" ] || fail "the old snapshot changed"
[ ! -e "$dir/index.snap.tmp" ] || fail "a partial snapshot was left behind"

note "SIGKILL and a restart on the full disk: it opens with the old snapshot and serves reads"
kill -9 "$spid"
wait "$spid" 2>/dev/null || true
start_shard 2
grep -q "ignoring index snapshot" "$WORK/shard2.log" && fail "the old snapshot was not usable"
grep -q "snapshot at id 3000" "$WORK/shard2.log" || fail "not opened from the old snapshot: $(cat "$WORK/shard2.log")"
verify_all a b
[ "$(count)" = $((3000 + nb)) ] || fail "count after restart $(count)"

note "space freed: writes succeed again"
free_all
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix c --limit 3000 --acked "$WORK/acked-c" \
  >/dev/null 2>&1 || fail "load after freeing space"
[ "$(lines "$WORK/acked-c")" = 3000 ] || fail "load after freeing space acked $(lines "$WORK/acked-c")"
"${C[@]}" snapshot >/dev/null || fail "snapshot after freeing space"

note "SIGKILL, restart: every acknowledged id byte for byte, nothing else"
kill -9 "$spid"
wait "$spid" 2>/dev/null || true
start_shard 3
verify_all a b c
[ "$(count)" = $((6000 + nb)) ] || fail "count at the end $(count), expected $((6000 + nb))"
kill -9 "$spid"
wait "$spid" 2>/dev/null || true
free_all

note "cirrus serve --http on the full disk: the store's message, reads answered"
hp=$(free_port)
sep="tcp://127.0.0.1:$(free_port)"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$mnt/d" --dim 64 --index Flat \
  --bind "$sep" --http "127.0.0.1:$hp"
wait_ready "$sep"
H="http://127.0.0.1:$hp"
"$BIN/cirrus" --endpoint "$sep" load --vectors "$WORK/v.fvecs" --id-prefix a --limit 1000 \
  --acked "$WORK/acked-sa" >/dev/null 2>&1 || fail "serve: first load"
fill 0
v=$(printf '0.5,%.0s' $(seq 1 63))0.5
body="{\"items\":[$(for i in $(seq 1 400); do printf '{"id":"h%d","vector":[%s]},' "$i" "$v"; done | sed 's/,$//')]}"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -X POST "$H/v1/items" -d "$body")
[ "$code" -ge 500 ] || fail "serve: a batch on a full disk answered $code: $(head -c 300 "$WORK/body")"
grep -q "no space left on device" "$WORK/body" || fail "serve: answer without the store's message: $(head -c 300 "$WORK/body")"
grep -q "retry is safe" "$WORK/body" && fail "serve: a full disk reported as unavailable"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$H/v1/search" -d "{\"vector\":[$v],\"k\":3}")" = 200 ] ||
  fail "serve: search on the full disk"
free_all
[ "$(curl -s -o "$WORK/body" -w '%{http_code}' -X POST "$H/v1/items" -d "$body")" = 200 ] ||
  fail "serve: the batch after freeing space: $(head -c 300 "$WORK/body")"
"$BIN/cirrus" --endpoint "$sep" verify --vectors "$WORK/v.fvecs" --id-prefix a \
  --acked "$WORK/acked-sa" >/dev/null || fail "serve: verify"
echo "1 passed, 0 failed"

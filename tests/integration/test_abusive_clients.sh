#!/usr/bin/env bash
# Slow and abusive clients against `cirrus serve --http` (issue 17): idle TCP connections to the
# ZeroMQ and HTTP ports, a slowloris, half-sent 38 MiB HTTP bodies, 70 MiB ZeroMQ frames and a
# client that never reads its replies, all at once for 20 s. A well-behaved client's searches
# keep answering (each within 3 s), RSS stays under baseline + 192 MiB (the 128 MiB HTTP body
# budget + 64) and the fd count under baseline + 200 + 512 + 64.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import zmq' 2>/dev/null || { echo "SKIP: Debian's python3-zmq is not installed"; exit 77; }
D=$(dirname "$0")
PY=(/usr/bin/python3 "$D/abusive_clients.py")
zp=$(free_port); hp=$(free_port); ep="tcp://127.0.0.1:$zp"
"$BIN/cirrus-bench" gen --n 2000 --dim 64 --queries 1 --out "$WORK/v.fvecs" --query-out "$WORK/q.fvecs" >/dev/null
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/d" --dim 64 --index Flat --bind "$ep" --http "127.0.0.1:$hp"
SP=$LAST_PID
wait_ready "$ep"
"$BIN/cirrus" --endpoint "$ep" load --vectors "$WORK/v.fvecs" --id-prefix a >/dev/null 2>&1 || fail "load"
rss() { awk '/VmRSS/ {print $2}' "/proc/$SP/status"; }
fds() { ls "/proc/$SP/fd" | wc -l; }
base_rss=$(rss); base_fd=$(fds)
note "baseline: RSS $base_rss KiB, $base_fd fds"
T=20
"${PY[@]}" idle 127.0.0.1 "$zp" 200 127.0.0.1 $T "$WORK/st-iz" & PIDS+=($!)
"${PY[@]}" idle 127.0.0.1 "$hp" 200 127.0.0.3 $T "$WORK/st-ih" & PIDS+=($!)
perl "$D/slowloris.pl" "$hp" 0 100 $T "$WORK/st-sl" & PIDS+=($!)
"${PY[@]}" oversized "$ep" $((70 << 20)) $T "$WORK/st-ov" & PIDS+=($!)
"${PY[@]}" noread "$ep" 64 100 $T "$WORK/st-nr" & PIDS+=($!)
/usr/bin/python3 - "$hp" $T <<'PYEOF' & PIDS+=($!)
import socket, sys, time
conns = []
for i in range(20):
    try:
        s = socket.create_connection(("127.0.0.4", int(sys.argv[1])), source_address=("127.0.0.4", 0))
        s.sendall(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000\r\n\r\n")
        for _ in range(38):
            s.sendall(b"x" * (1 << 20))
        conns.append(s)
    except OSError:
        pass
time.sleep(float(sys.argv[2]))
PYEOF
v=$(printf '0.5,%.0s' $(seq 1 63))0.5
max_ms=0; n=0; max_rss=0; max_fd=0
end=$((SECONDS + T - 2))
while [ $SECONDS -lt $end ]; do
  t0=$(date +%s%N)
  "$BIN/cirrus" --endpoint "$ep" --timeout 5000 search --vector "$v" -k 3 >/dev/null 2>&1 || fail "ZeroMQ search failed during the abuse"
  curl -s -m 5 -X POST "http://127.0.0.1:$hp/v1/search" -d "{\"vector\":[$v],\"k\":3}" | grep -q '"hits"' || fail "HTTP search failed during the abuse"
  ms=$(( ($(date +%s%N) - t0) / 1000000 )); n=$((n + 1))
  [ $ms -gt $max_ms ] && max_ms=$ms
  r=$(rss); f=$(fds)
  [ "$r" -gt $max_rss ] && max_rss=$r
  [ "$f" -gt $max_fd ] && max_fd=$f
  sleep 0.2
done
note "$n search pairs, slowest $max_ms ms; RSS peak $max_rss KiB (+$(( (max_rss - base_rss) >> 10 )) MiB), fds peak $max_fd"
kill -0 "$SP" || fail "cirrus serve died"
[ $max_ms -lt 3000 ] || fail "a search pair took $max_ms ms"
[ $max_rss -lt $((base_rss + (192 << 10))) ] || fail "RSS grew to $max_rss KiB from $base_rss"
[ $max_fd -lt $((base_fd + 776)) ] || fail "fds grew to $max_fd from $base_fd"
echo "1 passed, 0 failed"

#!/usr/bin/env bash
# A kept connection whose path dies silently (issue 19, item 2): runs the
# ignored test `a_dead_path_is_noticed_by_keepalive` of tests/real_network.rs
# against a server in a second network namespace, joined by a veth pair,
# whose outgoing packets are then all dropped (a `pfifo` queue of length 0:
# no FIN, no RST, the client's keepalive probes go unanswered). Prints when
# the event stream reported the dead path. Needs root (network namespaces),
# `ip`, `tc`, `unshare`, `nsenter` and python3; changes nothing outside the
# namespaces it creates. (A drop on the client's own interface would not
# do: Linux counts a locally dropped probe as congestion, not as
# unanswered, and retries it forever.)
#
#   sudo benches/dead_path.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo test -q --all-features --test real_network --no-run
export ROOT="$root"
exec unshare -n bash -euo pipefail -c '
ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.77.0.1/24 dev v0
ip link set v0 up
# The server side: a namespace of its own, held by a sleeping process.
unshare -n sleep 600 &
holder=$!
trap "kill \$holder \${server:-} 2>/dev/null || true" EXIT
sleep 0.3
ip link set v1 netns "$holder"
nsenter -t "$holder" -n sh -c "ip link set lo up; ip addr add 10.77.0.2/24 dev v1; ip link set v1 up"
# Answers the handshake (tt=0) at once; never answers a long-poll.
nsenter -t "$holder" -n python3 -c "
import socket, threading
def serve(c):
    try:
        f = c.makefile(\"rb\")
        while True:
            line = f.readline()
            if not line: return
            while f.readline() not in (b\"\\r\\n\", b\"\"): pass
            if b\"tt=0\" in line:
                body = b\"{\\\"t\\\":{\\\"t\\\":\\\"100\\\",\\\"r\\\":1},\\\"m\\\":[]}\"
                c.sendall(b\"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s\" % (len(body), body))
    except OSError:
        pass
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"10.77.0.2\", 8080)); s.listen()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
" >/dev/null 2>&1 &
server=$!
sleep 0.5
export DEAD_PATH_ORIGIN=http://10.77.0.2:8080
export DEAD_PATH_CUT="nsenter -t $holder -n tc qdisc add dev v1 root pfifo limit 0"
cd "$ROOT"
cargo test -q --offline --all-features --test real_network -- --ignored --nocapture a_dead_path
'

#!/usr/bin/env bash
# Capture one exchange with the lab's server between two network namespaces:
#   sudo bash bench/bulk_capture.sh OUT.pcap NBYTES           a BULK download of NBYTES
#   sudo CLIENT=bench/pipelined_requests.py bash bench/bulk_capture.sh OUT.pcap COUNT
# A veth pair with offloads off (wire-sized segments), tcpdump with a 64 MB
# buffer on the server's side, whole packets. Used by bench/inspect.py.
set -euo pipefail
out=$1
nbytes=$2
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v tcpdump >/dev/null 2>&1; then
    echo "bulk_capture.sh: tcpdump is missing; install it (bash .ci/setup --test does)" >&2
    exit 1
fi
A=nlbench-a
B=nlbench-b

# shellcheck source=../tests/corpus/veth_pair.sh
. "$root/tests/corpus/veth_pair.sh"
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
    veth_pair_remove $A $B
}
trap cleanup EXIT
cleanup
veth_pair $A $B 10.98.0

ip netns exec $B env PYTHONPATH="$root" timeout 300 python3 -m lab.server --host 10.98.0.2 --port 7070 2>/dev/null &
server=$!
ip netns exec $B timeout 300 tcpdump -i veth-b -s "${SNAPLEN:-0}" -B 65536 --immediate-mode -w "$out" 2>/dev/null &
tcpdump=$!
sleep 1
if [ -n "${CLIENT:-}" ]; then
    ip netns exec $A env PYTHONPATH="$root" timeout 300 python3 "$CLIENT" 10.98.0.2 "$nbytes"
else
    ip netns exec $A env PYTHONPATH="$root" timeout 300 python3 -m lab.client --host 10.98.0.2 --timeout 60 --bulk "$nbytes"
fi
sleep 1
kill -TERM $tcpdump
wait $tcpdump || true

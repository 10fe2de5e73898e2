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
A=nlbench-a
B=nlbench-b

cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip netns add $A
ip netns add $B
ip link add veth-a netns $A type veth peer name veth-b netns $B
ip -n $A addr add 10.98.0.1/24 dev veth-a
ip -n $B addr add 10.98.0.2/24 dev veth-b
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set veth-a up
ip -n $B link set veth-b up
ip netns exec $A ethtool -K veth-a tso off gso off gro off >/dev/null
ip netns exec $B ethtool -K veth-b tso off gso off gro off >/dev/null

ip netns exec $B env PYTHONPATH="$root" timeout 300 python3 -m lab.server --host 10.98.0.2 --port 7000 2>/dev/null &
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

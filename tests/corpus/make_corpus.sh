#!/usr/bin/env bash
# Make the analysis corpus: captures of real programs (the lab's server and client,
# curl and python's http.server, nc, iperf3, small python peers) talking between two
# network namespaces joined by a veth pair, with loss from iptables' statistic match.
# Needs root, iproute2, iptables, ethtool, tcpdump, curl, nc, ping, iperf3. Writes *.pcap next to
# itself (or into $1), then README.md's table says what each one holds.
#
# tshark is the judge of these files (tests/test_inspect_corpus.py); its verdicts
# are computed at test time, not stored.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
root=$(cd "$here/../.." && pwd)
A=nlcorpus-a
B=nlcorpus-b
pids=()

# shellcheck source=veth_pair.sh
. "$here/veth_pair.sh"
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    veth_pair_remove $A $B
}
trap cleanup EXIT
cleanup
veth_pair $A $B 10.99.0 fd99

# Every command is bounded: nothing here can hang the script.
in_a() { ip netns exec $A timeout 120 "$@"; }
in_b() { ip netns exec $B timeout 120 "$@"; }
py() { PYTHONPATH="$root" python3 "$@"; }

start_b() {  # start a server in B, remember its pid (ip netns exec execs, so $! is the server)
    ip netns exec $B env PYTHONPATH="$root" timeout 600 "$@" >/dev/null 2>&1 &
    pids+=($!)
    sleep 0.7
}

capture() {  # capture NAME SNAPLEN COMMAND...: tcpdump in B around COMMAND
    local name=$1 snap=$2
    shift 2
    # Started directly (not through a function), so $! is tcpdump itself; SIGTERM
    # because a non-interactive shell starts background jobs with SIGINT ignored.
    # --immediate-mode: otherwise packets wait in a ring block until it fills or
    # a second passes, and tcpdump exits without the ones still waiting.
    ip netns exec $B tcpdump -i "${iface:-veth-b}" ${linktype:+-y "$linktype"} -s "$snap" \
        --immediate-mode -U -w "$out/$name.pcap" 2>/dev/null &
    local tcpdump=$!
    sleep 0.7
    "$@"
    sleep 1
    kill -TERM $tcpdump
    wait $tcpdump || true
    echo "corpus: $name.pcap"
}

start_b python3 -m lab.server --host 10.99.0.2 --port 7000
start_b python3 -m lab.server --host fd99::2 --port 7001
mkdir -p /tmp/nlcorpus-www && head -c 300000 /dev/urandom > /tmp/nlcorpus-www/blob.bin
echo "hello from http.server" > /tmp/nlcorpus-www/index.html
start_b python3 -m http.server 8000 --bind 10.99.0.2 --directory /tmp/nlcorpus-www
start_b iperf3 -s -B 10.99.0.2 -p 5201

lab_session() {
    in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 'ECHO hello' 'UPPER tcp' TIME QUIT >/dev/null
    in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 --bulk 200000 >/dev/null
    in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 --udp 'ECHO over udp' >/dev/null
    in_a ping -c 2 -i 0.2 10.99.0.2 >/dev/null
    in_a env PYTHONPATH="$root" python3 -m lab.client --host fd99::2 --port 7001 'ECHO over ipv6' >/dev/null
    in_a nc -z -w 1 10.99.0.2 9 || true          # a refused connection: SYN, RST/ACK
    printf 'ECHO typed into nc\nQUIT\n' | in_a nc -N -w 2 10.99.0.2 7000 >/dev/null
}
capture lab 0 lab_session

http_session() {
    for _ in 1 2; do in_a curl -s -o /dev/null http://10.99.0.2:8000/index.html; done
    in_a curl -s -o /dev/null http://10.99.0.2:8000/blob.bin
    in_a curl -s -o /dev/null http://10.99.0.2:8000/missing
}
capture http 200 http_session

reuse_session() {  # one client port, three connections; the server closes first (QUIT)
    for _ in 1 2 3; do
        in_a python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.1", 40000)); s.connect(("10.99.0.2", 7000))
s.sendall(b"ECHO again\nQUIT\n")
while s.recv(100): pass
s.close()'
        sleep 0.2
    done
}
capture reuse 0 reuse_session

zero_window_session() {  # the receiver stops reading: zero window, probes, window updates
    start_b python3 -c '
import socket, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
srv.bind(("10.99.0.2", 7100)); srv.listen(1)
conn, _ = srv.accept(); time.sleep(1.5)
while conn.recv(2048): time.sleep(0.01)'
    in_a python3 -c '
import socket
s = socket.create_connection(("10.99.0.2", 7100)); s.sendall(b"x" * 150000); s.close()'
    sleep 2
}
capture zerowindow 120 zero_window_session

keepalive_session() {  # an idle connection with keep-alive probes every second
    in_a python3 -c '
import socket, time
s = socket.create_connection(("10.99.0.2", 7000))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.sendall(b"ECHO stay\n"); s.recv(100); time.sleep(3.5); s.close()'
}
capture keepalive 0 keepalive_session

lossy() {  # lose ~3% of the lab port's packets each way, and 2% of iperf's
    # Dropped where they arrive (INPUT), after the capture has seen them. A packet
    # dropped in OUTPUT is reported to the sender's TCP, which sends it again at
    # once: nothing is ever lost on the wire that way.
    in_a iptables -A INPUT -p tcp --sport 7000 -m statistic --mode random --probability 0.03 -j DROP
    in_b iptables -A INPUT -p tcp --dport 7000 -m statistic --mode random --probability 0.03 -j DROP
    in_b iptables -A INPUT -p tcp --dport 5201 -m statistic --mode random --probability 0.02 -j DROP
}
unlossy() {
    in_a iptables -F INPUT
    in_b iptables -F INPUT
}
loss_session() {
    for _ in 1 2; do
        in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 --timeout 20 --bulk 1500000 >/dev/null
    done
}
lossy
capture loss 120 loss_session
lossfull_session() {
    in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 --timeout 20 --bulk 300000 >/dev/null
}
capture lossfull 0 lossfull_session

iperf_session() { in_a iperf3 -c 10.99.0.2 -p 5201 -t 1 -b 40M >/dev/null; }
capture iperf 120 iperf_session

# The "any" pseudo-interface: Linux cooked captures (SLL and SLL2), both directions of B's traffic.
sll_session() {
    in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 'ECHO cooked' QUIT >/dev/null
}
iface=any linktype=LINUX_SLL2 capture sll2 0 sll_session
iface=any linktype=LINUX_SLL capture sll 0 sll_session

# A capture that itself misses ~2% of packets (the wire carried them): ACKed unseen.
ip netns exec $B timeout 120 python3 "$here/lossy_capture.py" veth-b "$out/missed.pcap" 0.02 120 &
missed=$!
sleep 0.7
in_a env PYTHONPATH="$root" python3 -m lab.client --host 10.99.0.2 --timeout 20 --bulk 1500000 >/dev/null
sleep 0.5
kill -TERM $missed
wait $missed || true
echo "corpus: missed.pcap"
unlossy

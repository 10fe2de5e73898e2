#!/usr/bin/env bash
# Make the captures the notebooks study when the learner has none of their own,
# with the lab itself (a lab named nbdata, removed at the end):
#   bash notebooks/data/make_data.sh
# Each capture is taken on the server's eth0 by `invoke capture`, exactly as a
# learner takes one; notebooks/data/README.md says what each holds.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/notebooks/data
cd "$root"
lab=nbdata
inv() { .venv/bin/invoke "$@" --lab "$lab"; }
capture_while() {  # capture_while NAME SECONDS COMMAND...: a timed capture around COMMAND
    local name=$1 seconds=$2
    shift 2
    inv capture --seconds "$seconds" --name "$name" &
    local capturing=$!
    sleep 2                      # the capture container is up and capturing by then
    "$@"
    wait "$capturing"
    mv "captures/$name.pcapng" "$out/$name.pcapng"
}
trap 'inv impair --clear >/dev/null 2>&1 || true; inv down >/dev/null' EXIT

inv up

# 01-03: three requests on one connection, then a connection refused by a closed port.
exchange() {
    inv send 'ECHO hello, TCP' --next 'UPPER a byte stream' --next TIME
    docker exec "$lab-client" nc -z -w 1 server 7001 || true
}
capture_while exchange 6 exchange

# 04: a 3 MB BULK download while 2% of what the server sends is lost.
inv impair --loss 2
inv capture --bulk 3000000 --name bulk-loss
mv captures/bulk-loss.pcapng "$out/bulk-loss.pcapng"
inv impair --clear

# 05: a SYN by hand (the kernel's RST follows), then a whole connection by hand.
crafting() {
    for what in syn connect; do
        docker run --rm --network "container:$lab-client" --user 0 --cap-drop ALL --cap-add NET_RAW \
            --cap-add NET_ADMIN --tmpfs /run "tcplab/lab:$lab" python3 -m lab.inside.craft "$what"
    done
}
capture_while crafted 8 crafting

# 06: two requests over UDP, then one while every datagram from the client is lost.
udp() {
    inv send --udp 'ECHO over UDP' --next TIME
    inv impair --target client --loss 100
    inv send --udp 'ECHO into the void' || true     # times out: UDP does not retransmit
    inv impair --clear
}
capture_while udp 14 udp

# 07 and 08: scenarios, each capture with the kernel's samples beside it. The lab
# comes up again with reno (the textbook's algorithm, and one every host lets
# containers use), then with bbr for the bufferbloat comparison. A scenario's
# capture is named for its congestion control: slow-start-reno-seed1.pcapng.
scenario() {  # scenario NAME FILE CC: run a bundled scenario (seed 1) on a lab with CC, keep it as FILE
    inv scenario "$1" --seed 1
    mv "captures/$1-$3-seed1.pcapng" "$out/$2.pcapng"
    mv "captures/$1-$3-seed1.kernel.jsonl" "$out/$2.kernel.jsonl"
}
inv down
inv up --cc reno
scenario slow-start slow-start reno
scenario aimd aimd reno
scenario bufferbloat bufferbloat-reno reno
scenario syn-loss syn-loss reno
scenario tail-loss-probe tail-loss-probe reno
scenario tail-loss-rto tail-loss-rto reno
scenario zero-window zero-window reno
scenario nagle nagle reno
scenario nagle-off nagle-off reno
scenario fairness fairness reno
inv down
inv up --cc bbr
scenario bufferbloat bufferbloat-bbr bbr
scenario bbr bbr bbr
scenario fairness-bbr-reno fairness-bbr-reno bbr

# 09: the lab across two hosts of a swarm, made here on two engines in namespaces
# (.ci/cluster, root only); the capture of node 1's own interface, the lab inside VXLAN.
if [ "$(id -u)" = 0 ]; then
    inv down
    bash .ci/cluster up 2 "tcplab/lab:$lab"
    export INVOKE_LAB_ENGINE=swarm INVOKE_LAB_SUBNET=10.79.30.0/24
    export INVOKE_LAB_NODES=unix:///run/tcplab-cluster/node1.sock,unix:///run/tcplab-cluster/node2.sock
    inv up
    inv capture --bulk 1000000 --underlay --name overlay
    mv captures/overlay.underlay.pcap "$out/overlay.underlay.pcap"
    rm -f captures/overlay.pcapng
    inv down
    unset INVOKE_LAB_ENGINE INVOKE_LAB_SUBNET INVOKE_LAB_NODES
    bash .ci/cluster down
fi
ls -la "$out"

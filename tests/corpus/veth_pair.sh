# A two-host test bed on one machine: network namespaces A and B joined by a veth
# pair (veth-a, veth-b), addresses PREFIX.1 and PREFIX.2 (and V6PREFIX::1, ::2 if
# given), offloads off so every segment is wire-sized. Sourced by make_corpus.sh
# and bench/bulk_capture.sh; needs root, iproute2 and ethtool.
#
#   veth_pair A B 10.99.0 [fd99]        make it
#   veth_pair_remove A B                remove it (and everything in it)

veth_pair() {
    local a=$1 b=$2 prefix=$3 v6=${4:-} tool
    for tool in ip ethtool; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "veth_pair: $tool is missing; install it (bash .ci/setup --test does)" >&2
            return 1
        fi
    done
    if [ "$(id -u)" != 0 ]; then
        echo "veth_pair: network namespaces need root; run this as root (sudo)" >&2
        return 1
    fi
    ip netns add "$a"
    ip netns add "$b"
    ip link add veth-a netns "$a" type veth peer name veth-b netns "$b"
    ip -n "$a" addr add "$prefix.1/24" dev veth-a
    ip -n "$b" addr add "$prefix.2/24" dev veth-b
    if [ -n "$v6" ]; then
        ip -n "$a" -6 addr add "$v6::1/64" dev veth-a nodad
        ip -n "$b" -6 addr add "$v6::2/64" dev veth-b nodad
    fi
    for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
    ip -n "$a" link set veth-a up
    ip -n "$b" link set veth-b up
    ip netns exec "$a" ethtool -K veth-a tso off gso off gro off >/dev/null
    ip netns exec "$b" ethtool -K veth-b tso off gso off gro off >/dev/null
}

veth_pair_remove() {
    ip netns del "$1" 2>/dev/null || true
    ip netns del "$2" 2>/dev/null || true
}

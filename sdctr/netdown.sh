# The ExecStopPost that takes down what sdctr/netup.sh made, without starting Python:
#
#   sh netdown.sh VETH LEASE PIN HOOK...
#
# deletes VETH (its peer, eth0 in the container's namespace, goes with it), the lease file LEASE
# and the namespace pinned at PIN. Anything that will not go is HOOK's (`sdctr hook netdown ID`,
# which also removes what only it makes: published ports' nftables elements, and what `network
# connect` added).

veth=$1 lease=$2 pin=$3
shift 3

[ -e "$pin.connected" ] && exec "$@"  # `network connect` added eth1...: the hook knows them

if [ -e "/sys/class/net/$veth" ]; then
    ip link del "$veth" 2>/dev/null || [ ! -e "/sys/class/net/$veth" ] || exec "$@"
fi
if [ -e "$pin" ]; then
    umount "$pin" 2>/dev/null
fi
rm -f -- "$lease" "$pin" || exec "$@"

# The ExecStartPre of a container on a bridge network, in the common case, without starting
# Python (the hook's interpreter and imports were ~50 ms of every start on the bridge):
#
#   sh netup.sh ID LEASES BRIDGE PREFIX GATEWAY LOW HIGH REQUESTED PIN HOSTS HOSTNAME HOOK...
#
# takes an address under LEASES.lock (the directory of sdctr/net/ipam.py: one file per container
# holding its address, .last the address handed out last; REQUESTED, --ip, and LOW..HIGH, the
# host addresses, and GATEWAY as integers), unshares and pins the network namespace at PIN, adds
# the veth pair (sdv<id12> on BRIDGE, eth0 inside with Docker's 02:42 MAC from the address) and
# writes HOSTS. sdctr/net/setup.py's up() does the same in Python; anything out of the common case
# -- no bridge yet (making it has checks to run), a veth, pin or lease left by an earlier start,
# a requested address that is taken, a full subnet, a failed step -- goes to HOOK
# (`sdctr hook netup ID`), which takes down what an earlier start left, redoes it all, and says
# what is wrong. Published ports are the hook's too (it checks the host port is free).
# Builtins only, but for flock, unshare, ip and nsenter.

cid=$1 leases=$2 bridge=$3 prefix=$4 gateway=$5 low=$6 high=$7 requested=$8 pin=$9
hosts=${10} hostname=${11}
shift 11

veth=sdv${cid%"${cid#????????????}"}
[ -d "/sys/class/net/$bridge/bridge" ] || exec "$@"
[ ! -e "${hosts%/*}/connected" ] || exec "$@"  # networks `network connect` added: the hook's
[ ! -e "/sys/class/net/$veth" ] && [ ! -e "$pin" ] && [ ! -e "$leases/$cid" ] || exec "$@"
[ -d "$leases" ] && [ -d "${pin%/*}" ] && [ ! -e "$leases.json" ] || exec "$@"  # (the hook moves the old format in)
for f in "${hosts%/*}"/followers/*; do  # containers to start with it (sdctr/net/joined.py): the hook's
    [ -e "$f" ] && exec "$@"
done

dotted() {  # $1 as a dotted quad, in $ip
    ip=$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))
}
number() {  # the dotted quad $1 as an integer, in $n
    local IFS=.
    set -- $1
    n=$(($1 << 24 | $2 << 16 | $3 << 8 | $4))
}

# the hook takes the same lock: it must not inherit it held (each hand-over below closes it)
exec 9>>"$leases.lock"
flock 9 || { exec 9>&-; exec "$@"; }
taken=" "
for f in "$leases"/*; do
    [ -f "$f" ] && read -r a < "$f" && taken="$taken$a "
done
if [ -n "$requested" ]; then
    n=$requested
    dotted "$n"
    [ "$n" -ge "$low" ] && [ "$n" -le "$high" ] && [ "$n" -ne "$gateway" ] || { exec 9>&-; exec "$@"; }
    case $taken in *" $ip "*) exec 9>&-; exec "$@" ;; esac
else
    # the address of its last start where it is still free (ipam.pick's preferred: a restart or
    # a reboot keeps it), else the next free address after the last one handed out (a released
    # address is not reused at once), wrapping around once
    prev=
    [ -f "${hosts%/*}/address" ] && read -r prev < "${hosts%/*}/address"
    n=
    case $prev in
        *.*.*.*) number "$prev"
                 if [ "$n" -lt "$low" ] || [ "$n" -gt "$high" ] || [ "$n" -eq "$gateway" ]; then n=; fi
                 case $taken in *" $prev "*) n= ;; esac ;;
    esac
fi
if [ -n "$requested" ] || [ -n "$n" ]; then
    dotted "$n"
else
    start=$low
    last=
    [ -f "$leases/.last" ] && read -r last < "$leases/.last"
    if [ -n "$last" ]; then
        number "$last"
        [ "$n" -ge "$low" ] && [ "$n" -lt "$high" ] && start=$((n + 1))
    fi
    n=$start wrapped=
    while :; do
        if [ "$n" -gt "$high" ]; then n=$low wrapped=1; fi
        [ -n "$wrapped" ] && [ "$n" -ge "$start" ] && { exec 9>&-; exec "$@"; }  # full: the hook says so
        dotted "$n"
        if [ "$n" -ne "$gateway" ]; then
            case $taken in *" $ip "*) ;; *) break ;; esac
        fi
        n=$((n + 1))
    done
fi
echo "$ip" > "$leases/$cid" && echo "$ip" > "$leases/.last" || { exec 9>&-; exec "$@"; }
exec 9>&-

: > "$pin" && unshare --net="$pin" true || exec "$@"
dotted "$gateway"
gw=$ip
dotted "$n"
printf 'link add %s type veth peer name eth0 address 02:42:%02x:%02x:%02x:%02x netns %s\nlink set %s master %s up\n' \
    "$veth" $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)) "$pin" "$veth" "$bridge" \
    | ip -batch - || exec "$@"
printf 'link set lo up\naddr add %s/%s dev eth0\nlink set eth0 up\nroute add default via %s\n' \
    "$ip" "$prefix" "$gw" | nsenter --net="$pin" ip -batch - || exec "$@"
# as sdctr/net/dns.py's hosts() writes it
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n' "$ip" "$hostname" \
    > "$hosts" || exec "$@"
echo "$ip" > "${hosts%/*}/address" || exec "$@"  # preferred at the next start (net/setup.py's ADDRESS)

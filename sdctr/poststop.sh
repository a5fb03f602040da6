# The ExecStopPost of a --rm container in the common case, without starting Python (the hook's
# interpreter and imports were ~70 ms of every `sdctr run --rm`):
#
#   sh poststop.sh ROOTFS EXIT_FILE SNAPSHOT RUN_DIR UNIT_FILE RECORD HOOK...
#   sh poststop.sh ROOTFS '' '' '' '' RECORD HOOK...   (a thin container: its rootfs unit's storage)
#
# unmounts ROOTFS, deletes SNAPSHOT, RUN_DIR, UNIT_FILE and RECORD (the record last, so a failure
# leaves it findable, and under its lock) and then writes EXIT_FILE, unless empty, for the
# attached `sdctr run` that waits for it, or a `sdctr wait` that comes after the record is gone
# (units made before that pass it empty for a detached container). Anything out of the common case -- the command killed
# by a signal, an OOM kill, a start that never ran the command, a mount that will not go, a
# failed step -- goes to HOOK (`sdctr hook poststop ID`), which is idempotent and knows how to
# handle and report each.
# Builtins only until the unmount: the checks cost no fork.

rootfs=$1 exit_file=$2 snapshot=$3 run_dir=$4 unit_file=$5 record=$6
shift 6

# systemd's verdict on the main process: a plain exit with a number is ours to handle
case $SERVICE_RESULT in success|exit-code) ;; *) exec "$@" ;; esac
[ "$EXIT_CODE" = exited ] || exec "$@"
case $EXIT_STATUS in ''|*[!0-9]*) exec "$@" ;; esac

# ExecStopPost runs in the unit's cgroup (sdctr/cgroups.py reads the same counters in Python):
# a non-zero oom_kill counter there means the kernel
# killed something in it (cgroup v1 reports that as a plain SIGKILL); the hook records it
oom=
while IFS=: read -r _ controllers cgroup; do
    case ",$controllers," in
        *,memory,*) counters=/sys/fs/cgroup/memory$cgroup/memory.oom_control ;;
        ,,) counters="/sys/fs/cgroup$cgroup/memory.events /sys/fs/cgroup/unified$cgroup/memory.events" ;;
        *) continue ;;
    esac
    for f in $counters; do
        [ -r "$f" ] || continue
        while read -r key value; do
            [ "$key" = oom_kill ] && [ "$value" != 0 ] && oom=1
        done < "$f"
    done
done < /proc/self/cgroup
[ -z "$oom" ] || exec "$@"

# No SNAPSHOT: the storage is a unit of its own (devicemapper's sdctr-rootfs@<id>.service, stopped
# once this unit is), which unmounts, deletes the device and the record and then tells the
# attached run. Only the exit status, recorded for it in RECORD/exit.json: whole (a temp name as
# sdctr/state.py's, swept if a kill leaves it) and under the record's lock, so that a record
# `rm` removes meanwhile is not made again. No fsync: the record is about to go.
if [ -z "$snapshot" ]; then
    [ -d "$record" ] || exit 0  # `sdctr rm` removed it: nobody waits
    tmp=$record/.exit.json.tmp$$
    { flock 9 && echo "{\"exit_code\": $EXIT_STATUS, \"oom_killed\": false, \"result\": \"$SERVICE_RESULT\"}" > "$tmp" \
        && mv -f "$tmp" "$record/exit.json"; } 9< "$record" || exec "$@"
    exit 0
fi

umount "$rootfs" 2>/dev/null || exec "$@"
# deleting through a mount would delete someone else's files: any mount left under the runtime
# directory or using the snapshot is the hook's to report
! grep -qF -e " $run_dir/" -e "$snapshot/" /proc/self/mountinfo || exec "$@"
rm -rf --one-file-system -- "$snapshot" "$run_dir" "$unit_file" || exec "$@"
# The record under its lock, as sdctr/state.py's remove_record: a flock on the record directory
# itself (opened read-only, never created), so a status update in progress lands first and one
# waiting finds the record gone, instead of a write racing rm into a half-removed directory.
if [ -e "$record" ]; then
    { flock 9 && rm -rf --one-file-system -- "$record"; } 9< "$record" || exec "$@"
fi

# the CLI polls for this file and reads it whole once it parses
[ -z "$exit_file" ] || echo "{\"exit_code\": $EXIT_STATUS, \"oom_killed\": false, \"result\": \"$SERVICE_RESULT\"}" > "$exit_file"

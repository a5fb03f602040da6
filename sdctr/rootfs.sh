# The devicemapper driver's activation and deactivation, run by units/sdctr-rootfs@.service
# (outside the container's device cgroup) without starting Python in the common case:
#
#   sh rootfs.sh up|down ID
#
# with the container's device in the environment, from <root>/containers/ID/rootfs.env (written
# by sdctr at each start: sdctr/runtime/hooks.py write_rootfs_env): ROOTFS_DEVICE and ROOTFS_POOL
# (/dev/mapper paths), ROOTFS_TABLE (the thin target's table), ROOTFS_FSTYPE, ROOTFS_OPTIONS,
# ROOTFS_TARGET (<run>/ID/rootfs), ROOTFS_PYTHON, ROOTFS_STATE, and ROOTFS_FAST ("up", "up down" or
# empty: which of the two this script may do itself). For --rm also ROOTFS_REMOVE=1 and the
# pool's files (ROOTFS_LOCK, ROOTFS_TRANSACTIONS, ROOTFS_METADATA: the device's JSON) and the
# record's (ROOTFS_RECORD, ROOTFS_RUN_DIR, ROOTFS_UNIT_FILE); for an attached run ROOTFS_EXIT, the
# exit file it waits for.
#
# up: the pool brought up first where it is not (after a reboot, before sdctr-thinpool.service:
# Python's, it has transactions to check); `dmsetup create` unless the device is there; the mount
# unless it is mounted. down: the unmount and `dmsetup remove` (--retry: udev's probe may hold
# the device a moment); for --rm the device deleted from the pool in one transaction, as
# sdctr/storage/devicemapper.py's _delete makes it (the same files, the same lock, the same
# order: a kill anywhere leaves what its recovery rolls forward or back), then the record; last,
# an attached run's exit file. Anything else -- an ephemeral container's reset, a transaction
# left open, a pool whose transaction id is not the record's, a device mounted elsewhere
# (export's view), a failed step -- goes to the hook (`sdctr hook rootfs-up|rootfs-down ID`),
# which is idempotent and says what is wrong.

op=$1 cid=$2
hook() {
    exec 8>&-  # the pool's lock (delete_device's): the hook takes it itself
    exec "${ROOTFS_PYTHON:-/usr/bin/python3}" -m sdctr hook "rootfs-$op" "$cid"
}
case " $ROOTFS_FAST " in *" $op "*) ;; *) hook ;; esac
name=${ROOTFS_DEVICE#/dev/mapper/}

if [ "$op" = up ]; then
    [ -b "$ROOTFS_POOL" ] || "$ROOTFS_PYTHON" -m sdctr.storage.devicemapper up "$ROOTFS_STATE" || hook
    [ -b "$ROOTFS_DEVICE" ] || dmsetup create "$name" --table "$ROOTFS_TABLE" || hook
    [ -d "$ROOTFS_TARGET" ] || mkdir -p "$ROOTFS_TARGET" || hook
    mountpoint -q "$ROOTFS_TARGET" && exit 0
    mount -t "$ROOTFS_FSTYPE" ${ROOTFS_OPTIONS:+-o "$ROOTFS_OPTIONS"} "$ROOTFS_DEVICE" "$ROOTFS_TARGET" || hook
    exit 0
fi

# FILE CONTENT: written whole or not at all, as sdctr/state.py's write_json_atomic (its temp
# name too, so that one left by a kill is swept)
write() {
    tmp=${1%/*}/.${1##*/}.tmp$$
    printf '%s\n' "$2" > "$tmp" && sync "$tmp" && mv -f "$tmp" "$1" && sync "${1%/*}"
}

# the pool's transaction record as devicemapper.py writes it (json, indent 2)
transactions() {
    printf '{\n  "transaction_id": %s,\n  "next_device_id": %s,\n  "open": %s\n}' "$1" "$2" "$3"
}

delete_device() {
    json=$ROOTFS_METADATA id=${ROOTFS_TABLE##* }
    dev=${json##*/} && dev=${dev%.json}
    exec 8>>"$ROOTFS_LOCK" && flock 8 || return
    if [ -e "$json" ]; then  # (gone: `sdctr rm` deleted it, under this lock)
        old=$(sed -n 's/^  "transaction_id": \([0-9][0-9]*\),$/\1/p' "$ROOTFS_TRANSACTIONS")
        next=$(sed -n 's/^  "next_device_id": \([0-9][0-9]*\),$/\1/p' "$ROOTFS_TRANSACTIONS")
        # an open transaction, or anything this script did not expect, is Python's recovery
        [ -n "$old" ] && [ -n "$next" ] || return
        [ "$(cat "$ROOTFS_TRANSACTIONS")" = "$(transactions "$old" "$next" null)" ] || return
        # shellcheck disable=SC2046  # the status line, split: "0 SECTORS thin-pool TID ..."
        set -- $(dmsetup status "${ROOTFS_POOL#/dev/mapper/}") && [ "${4:-}" = "$old" ] || return
        grep -qx "  \"device_id\": $id," "$json" && grep -qx '  "deleted": false,' "$json" || return
        new=$((old + 1))
        write "$json" "$(sed 's/^  "deleted": false,$/  "deleted": true,/' "$json")" || return
        write "$ROOTFS_TRANSACTIONS" "$(transactions "$old" "$next" "{
    \"transaction_id\": $new,
    \"device_id\": $id,
    \"name\": \"$dev\",
    \"op\": \"delete\"
  }")" || return
        dmsetup message "$ROOTFS_POOL" 0 "delete $id" || return
        rm -f -- "$json" && sync "${json%/*}" || return
        dmsetup message "$ROOTFS_POOL" 0 "set_transaction_id $old $new" || return
        write "$ROOTFS_TRANSACTIONS" "$(transactions "$new" "$next" null)" || return
    fi
    exec 8>&-
}

# as sdctr/runtime/hooks.py's remove_container: runtime directory, unit file, the record last
# and under its lock (sdctr/state.py's remove_record; poststop.sh does the same)
remove_record() {
    ! grep -qF " $ROOTFS_RUN_DIR/" /proc/self/mountinfo || return
    rm -rf --one-file-system -- "$ROOTFS_RUN_DIR" "$ROOTFS_UNIT_FILE" || return
    [ -e "$ROOTFS_RECORD" ] || return 0
    { flock 9 && rm -rf --one-file-system -- "$ROOTFS_RECORD"; } 9< "$ROOTFS_RECORD"
}

if mountpoint -q "$ROOTFS_TARGET"; then
    umount "$ROOTFS_TARGET" || hook
fi
if [ -b "$ROOTFS_DEVICE" ]; then
    # still mounted elsewhere (`sdctr export` of a stopped container): the hook defers the removal
    while read -r source _; do
        [ "$source" != "$ROOTFS_DEVICE" ] || hook
    done < /proc/self/mounts
    dmsetup remove --retry "$name" || hook
fi
status='{}'  # what an attached run is told: the status the container's poststop recorded
if [ -n "${ROOTFS_EXIT:-}" ]; then
    [ -d "$ROOTFS_RECORD" ] || exit 0  # `sdctr rm` removed it: nobody waits
    # sdctr/poststop.sh's one line (a builtin read); else what the poststop hook wrote
    if [ -f "$ROOTFS_RECORD/exit.json" ]; then
        IFS= read -r status < "$ROOTFS_RECORD/exit.json" || hook
    elif [ -f "$ROOTFS_RECORD/status.json" ]; then
        status=$(cat "$ROOTFS_RECORD/status.json") || hook
    fi
fi
if [ -n "${ROOTFS_REMOVE:-}" ]; then
    delete_device || hook
    remove_record || hook
fi
# last: the attached `sdctr run` returns once nothing is left active
[ -z "${ROOTFS_EXIT:-}" ] || write "$ROOTFS_EXIT" "$status"

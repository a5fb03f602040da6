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
# the device a moment); for --rm the device marked deleted, the record removed, an attached run's
# exit file written, and then the device deleted from the pool in one transaction, as
# sdctr/storage/devicemapper.py's _delete makes it (the same files, the same lock, the same
# order: a kill anywhere leaves what its recovery rolls forward or back). Anything else -- an
# ephemeral container's reset, a transaction left open, a pool whose transaction id is not the
# record's, a device mounted elsewhere (export's view), a failed step -- goes to the hook
# (`sdctr hook rootfs-up|rootfs-down ID`), which is idempotent and says what is wrong.

op=$1 cid=$2
hook() {
    exec 8>&-  # the pool's lock (delete_device's): the hook takes it itself
    # mark_deleted's temp file not renamed into place (the hook's recovery reads the rest)
    [ -z "${json_tmp:-}" ] || rm -f -- "$json_tmp"
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

# Files written whole or not at all, as sdctr/state.py's write_json_atomic (its temp names too,
# so that one left by a kill is swept): `put` writes a temp file, `sync` makes it durable (one
# process for several: each is a fork under an emulated CPU), `commit` renames it into place and
# makes the rename durable.
nl='
'
tmp_of() { tmp=${1%/*}/.${1##*/}.tmp$$; }
put() { tmp_of "$1" && printf '%s\n' "$2" > "$tmp"; }
commit() { tmp_of "$1" && mv -f "$tmp" "$1" && sync "${1%/*}"; }

# the pool's transaction record as devicemapper.py writes it (json, indent 2)
transactions() {
    rec="{$nl  \"transaction_id\": $1,$nl  \"next_device_id\": $2,$nl  \"open\": $3$nl}"
}

# The device deleted from the pool in one transaction, in _delete's order, each step durable
# before the next, in two parts with the record's removal and the attached run's exit between
# them (as Docker's deferred deletion: `run --rm` returns once the container is gone, not once
# the pool has let go of its blocks):
#
#   mark_deleted: under the pool's lock (held to the end), the device's JSON marked deleted.
#     From here a kill leaves a deleted device with no transaction open, which the driver's
#     next change of the pool deletes (devicemapper.py's _finish_deletions).
#   delete_device: the transaction opened in the record; the delete message; the JSON removed;
#     set_transaction_id (the commit); the transaction closed.
#
# The files are read with builtins; a file is written and synced under a temp name first, so
# a kill leaves only temp files, swept.
mark_deleted() {
    json=$ROOTFS_METADATA id=${ROOTFS_TABLE##* } meta=${ROOTFS_METADATA%/*}
    dev=${json##*/} && dev=${dev%.json}
    exec 8>>"$ROOTFS_LOCK" && flock 8 || return
    [ -e "$json" ] || return 0  # (gone: `sdctr rm` deleted it, under this lock)
    # an open transaction, or anything this script did not expect, is Python's recovery
    n=0 old= next= odd=
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case $n:$line in
            1:'{'|4:'  "open": null'|5:'}') ;;
            2:'  "transaction_id": '*,) old=${line#*: } old=${old%,} ;;
            3:'  "next_device_id": '*,) next=${line#*: } next=${next%,} ;;
            *) odd=1 ;;
        esac
    done < "$ROOTFS_TRANSACTIONS"
    [ -z "$odd" ] && [ "$n" = 5 ] || return
    case $old in ''|*[!0-9]*) return ;; esac
    case $next in ''|*[!0-9]*) return ;; esac
    body= has_id= live= json_tmp=
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            "  \"device_id\": $id,") has_id=1 ;;
            '  "deleted": false,') live=1 line='  "deleted": true,' ;;
        esac
        body=${body:+$body$nl}$line
    done < "$json"
    [ -n "$has_id" ] && [ -n "$live" ] || return
    put "$json" "$body" && json_tmp=$tmp && sync "$json_tmp" && commit "$json" || return
    json_tmp= marked=1
}

delete_device() {
    [ -n "${marked:-}" ] || return 0
    # shellcheck disable=SC2046  # the status line, split: "0 SECTORS thin-pool TID ..."
    set -- $(dmsetup status "${ROOTFS_POOL#/dev/mapper/}") && [ "${4:-}" = "$old" ] || return
    new=$((old + 1)) open_tmp= closed_tmp=
    transactions "$old" "$next" "{
    \"transaction_id\": $new,
    \"device_id\": $id,
    \"name\": \"$dev\",
    \"op\": \"delete\"
  }"
    put "$ROOTFS_TRANSACTIONS.open" "$rec" && open_tmp=$tmp || return
    transactions "$new" "$next" null
    put "$ROOTFS_TRANSACTIONS.closed" "$rec" && closed_tmp=$tmp || return
    sync "$open_tmp" "$closed_tmp" || return
    mv -f "$open_tmp" "$ROOTFS_TRANSACTIONS" && sync "${ROOTFS_TRANSACTIONS%/*}" || return
    dmsetup message "$ROOTFS_POOL" 0 "delete $id" || return
    rm -f -- "$json" && sync "$meta" || return
    dmsetup message "$ROOTFS_POOL" 0 "set_transaction_id $old $new" || return
    mv -f "$closed_tmp" "$ROOTFS_TRANSACTIONS" && sync "${ROOTFS_TRANSACTIONS%/*}" || return
    open_tmp= closed_tmp=
    exec 8>&-
}

# as sdctr/runtime/hooks.py's remove_container: runtime directory, unit file, the record last
# and under its lock (sdctr/state.py's remove_record; poststop.sh does the same)
remove_record() {
    while IFS= read -r line; do
        case $line in *" $ROOTFS_RUN_DIR/"*) return 1 ;; esac
    done < /proc/self/mountinfo
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
    mark_deleted || hook
    remove_record || hook
fi
# the attached `sdctr run` returns once nothing of the container is left but blocks in the pool
# (whole, by a rename; not synced: /run does not outlive a crash)
[ -z "${ROOTFS_EXIT:-}" ] || { put "$ROOTFS_EXIT" "$status" && mv -f "$tmp" "$ROOTFS_EXIT"; } || hook
# Nobody waits for this part. The record is gone, so the hook has nothing to finish: what a
# failure leaves (the device marked deleted, perhaps a transaction open) is the driver's
# recovery's at its next change of the pool.
delete_device || {
    rm -f -- "${open_tmp:-}" "${closed_tmp:-}"
    echo "sdctr: device $dev: its deletion from the pool stopped short; sdctr finishes it at its next" \
        "change of the pool (sdctr system check shows it)" >&2
    exit 1
}

# The ExecStop of every container: SIGTERM to its PID 1 (the reaper, which forwards it to the
# command), then wait until that process is gone; after GRACE seconds, SIGKILL to it (the PID 1
# of the container's PID namespace: every process in it goes too). systemd 252 does not wait for
# a main process it did not fork itself once it sent SIGTERM; waiting here makes the grace period
# real. The grace is ours, not systemd's stop timeout: the unit's TimeoutStopSec is longer, and
# systemd applies it to ExecStopPost as well, so its SIGKILL never cuts the poststop hook short
# (issue 17: a hook killed halfway left the rootfs mounted and the unit failed).
#
#   sh stop.sh [GRACE]  (systemd sets $MAINPID; unset when the main process exited by itself;
#                        without GRACE, a unit made before it: systemd's timeout ends the wait)
#
# Builtins only, but for the 50 ms sleep between looks: a stop costs no Python start-up.

[ -n "$MAINPID" ] || exit 0
kill -TERM "$MAINPID" 2>/dev/null || exit 0
looks=0 limit=
case $1 in ''|*[!0-9]*) ;; *) limit=$(($1 * 20)) ;; esac
# gone, or a zombie waiting for systemd to reap it: /proc/PID/stat's third field, after the
# command name in parentheses (which may hold spaces and parentheses itself), is Z then
while read -r stat 2>/dev/null < "/proc/$MAINPID/stat"; do
    state=${stat##*) }
    [ "${state%% *}" != Z ] || exit 0
    [ "$looks" != "$limit" ] || kill -KILL "$MAINPID" 2>/dev/null || exit 0
    looks=$((looks + 1))
    sleep 0.05
done
exit 0

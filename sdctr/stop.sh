# The ExecStop of every container: SIGTERM to its PID 1 (the reaper, which forwards it to the
# command), then wait until that process is gone. systemd 252 does not wait for a main process it
# did not fork itself once it sent SIGTERM; waiting here makes the stop timeout a real grace
# period, and systemd kills this script, then everything left, when the timeout runs out.
#
#   sh stop.sh        (systemd sets $MAINPID; it is unset when the main process exited by itself)
#
# Builtins only, but for the 50 ms sleep between looks: a stop costs no Python start-up.

[ -n "$MAINPID" ] || exit 0
kill -TERM "$MAINPID" 2>/dev/null || exit 0
# gone, or a zombie waiting for systemd to reap it: /proc/PID/stat's third field, after the
# command name in parentheses (which may hold spaces and parentheses itself), is Z then
while read -r stat 2>/dev/null < "/proc/$MAINPID/stat"; do
    state=${stat##*) }
    [ "${state%% *}" != Z ] || exit 0
    sleep 0.05
done
exit 0

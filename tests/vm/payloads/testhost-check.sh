#!/bin/sh
# Payload for test_vm_tier.py: the test host (tests/testhost/testhost) on a machine whose
# /sys/fs/cgroup is the unified hierarchy, as a stock Debian 12 boots. It boots a test host, runs
# an sdctr container with -m/-c inside and reports what a user would check as "FACT name=value"
# lines: the cgroup version systemd inside sees, the unit's memory.max and cpu.weight (inside, and
# in the VM's own tree under the test host's cgroup), `systemctl status`, an OOM kill named by the
# kernel, and that `down` leaves no cgroup behind; then ./demo. With a pytest directory given, it
# then runs the testhost tier's smoke tests inside too.
#
#   usage: testhost-check.sh CHECKOUT [PYTEST_SITE [PYTEST_ARGS...]]
#     (PYTEST_ARGS may name more test files of tests/testhost, after test_testhost.py)
#     CHECKOUT     this checkout, shared read-only (vm run --share); its testhost is run
#     PYTEST_SITE  a directory holding pytest and what it imports (shared read-only too)
# The test host's debootstrapped root must be shared at the path the checkout's testhost expects.
set -u
checkout=$1; shift
T=$checkout/tests/testhost/testhost
name=vmth
fact() { echo "FACT $1=$2"; }
inside() { "$T" exec "$name" -- "$@"; }

fact vm_cgroup_fstype "$(findmnt -n -o FSTYPE /sys/fs/cgroup)"
fact vm_root_subtree_control "$(cat /sys/fs/cgroup/cgroup.subtree_control)"
# systemd's boot inside takes far longer under emulation than the 60 s testhost allows by default.
export SDCTR_TESTHOST_BOOT_TIMEOUT=300
"$T" up --name "$name" || { fact up_status "$?"; exit 1; }
fact up_status 0
fact inner_cgroup_fstype "$(inside findmnt -n -o FSTYPE /sys/fs/cgroup)"
fact inner_system_state "$(inside systemctl is-system-running)"
fact inner_controllers "$(inside cat /sys/fs/cgroup/cgroup.subtree_control)"
fact vm_testhost_subtree_control "$(cat /sys/fs/cgroup/sdctr-testhost-$name/cgroup.subtree_control)"

"$T" cp "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" "$name:/root/busybox-rootfs.sh"
inside sh -c 'sh /root/busybox-rootfs.sh /tmp/bb && tar -C /tmp/bb -cf /tmp/bb.tar . &&
  sdctr import /tmp/bb.tar busybox'
# The VM's kernel has dm-thin, but the test host is a container: auto says overlay, and why
fact testhost_driver "$(inside sdctr info --format '{{.Driver}}: {{.DriverReason}}')"
cid=$(inside sdctr run -d -c 512 -m 64m busybox sleep 1000)
fact run_status "$?"
unit="ctr-$(echo "$cid" | cut -c1-12).service"
inside systemctl status --no-pager "$unit"
fact unit_status_rc "$?"
fact unit_active "$(inside systemctl is-active "$unit")"
fact unit_memory_max "$(inside cat "/sys/fs/cgroup/sdctr.slice/$unit/memory.max")"
fact unit_cpu_weight "$(inside cat "/sys/fs/cgroup/sdctr.slice/$unit/cpu.weight")"
# The same file as the VM sees it: the limit sits in the machine's own tree, under the test host.
fact vm_memory_max "$(cat "/sys/fs/cgroup/sdctr-testhost-$name/sdctr.slice/$unit/memory.max")"
# The whole machine's status: every process in its tree has a pid it can name.
inside systemctl status --no-pager > /tmp/status.txt 2>&1
fact system_status_rc "$?"
head -40 /tmp/status.txt
fact system_status_state "$(sed -n 's/^ *State: *//p' /tmp/status.txt)"
inside sdctr rm -f "$cid" > /dev/null

oom=$(inside sdctr run -d -m 32m busybox dd if=/dev/zero of=/dev/null bs=100M count=1)
fact oom_wait "$(inside sdctr wait "$oom")"
fact oom_killed "$(inside sdctr inspect -f '{{.State.OOMKilled}}' "$oom")"
fact oom_memcg "$(dmesg | sed -n 's/.*oom_memcg=\([^,]*\),.*/\1/p' | tail -1)"
fact oom_unit "/sdctr-testhost-$name/sdctr.slice/ctr-$(echo "$oom" | cut -c1-12).service"
inside sdctr rm "$oom" > /dev/null

"$T" down "$name"
fact down_status "$?"
fact leftover_cgroups "$(find /sys/fs/cgroup -maxdepth 1 -name 'sdctr-testhost-*' | paste -sd ' ')"

# ./demo as the README has a user run it, from a copy whose tests/setup (apt-get, pip: the VM
# has no network) is a stand-in; its test host is the checkout's (testhost finds the checkout
# through the symlink).
mkdir -p /tmp/demo/tests && cp "$checkout/demo" /tmp/demo/ && ln -sfn "$checkout/tests/testhost" /tmp/demo/tests/
printf '#!/bin/sh\n' > /tmp/demo/tests/setup && chmod 755 /tmp/demo/tests/setup
/tmp/demo/demo > /tmp/demo.out 2>&1
fact demo_status "$?"
cat /tmp/demo.out
fact demo_limits "$(grep -A2 '^\[demo\]# cat /sys/fs/cgroup/' /tmp/demo.out | tail -n +2 | paste -sd ' ')"

if [ $# -gt 0 ]; then
  site=$1; shift
  # conftest.py wants debootstrap for this tier; the VM has no network and needs none, as the
  # root is shared: a stand-in that says so if it is ever called.
  printf '#!/bin/sh\necho "no debootstrap in the VM: share the test host root" >&2; exit 1\n' \
    > /usr/local/bin/debootstrap && chmod 755 /usr/local/bin/debootstrap
  # the tier's own tests, from the shared checkout (read-only: no cache, no byte code)
  cd "$checkout" && PYTHONPATH=$site PYTHONDONTWRITEBYTECODE=1 SDCTR_TESTS_STRICT=1 \
    python3 -m pytest -p no:cacheprovider -m testhost tests/testhost/test_testhost.py -v "$@"
  fact pytest_status "$?"
fi
fact done yes

#!/bin/sh
# Payload for test_thin_faults.py, run inside the VM (dm-thin loaded, systemd as PID 1) from the
# bundle test_thin_faults.py makes: this checkout's tests/ and pyproject.toml unpacked in $1; the
# rest of the arguments go to the fault campaign (tests/faults --local --thin: --trials N, --full,
# --fault NAME). The campaign runs on the VM's own systemd with storage.driver devicemapper, and
# prints its table (fault, trials, kills that landed, violations after the next command, after
# `system check --repair`); then, with every container removed, the pool is taken down and
# thin_check run once more. Reports "FACT name=value" lines.
set -u
checkout=$1
shift
fact() { echo "FACT $1=$2"; }
mkdir -p /etc/sdctr
cat > /etc/sdctr/sdctr.yaml <<'YAML'
storage:
  driver: devicemapper
  devicemapper:
    data_size: 4G
    metadata_size: 64M
    base_size: 1G
YAML
t0=$(date +%s)
# its progress (a line per fault) shown as it comes; the table at the end
{ SDCTR_FAULTS_LOCAL=1 python3 "$checkout/tests/faults" --local --thin --verbose "$@" 2>&1 >/tmp/table
  echo $? > /tmp/campaign-status; } | cat
fact campaign_status "$(cat /tmp/campaign-status)"
fact seconds_campaign "$(( $(date +%s) - t0 ))"
cat /tmp/table
fact storage "$(sdctr info 2>/dev/null | sed -n 's/^ *Storage Driver: *//p' | head -1)"
sdctr ps -aq | xargs -r sdctr rm -f >/dev/null
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
fact final_down "$?"
thin_check /var/lib/sdctr/devicemapper/pool/metadata
fact final_thin_check "$?"
fact done yes

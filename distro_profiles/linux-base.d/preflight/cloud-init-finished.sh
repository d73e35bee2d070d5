set -eu
# cloud-init must have finished its boot stages before the cleanup phase runs
# `cloud-init clean`: a stage still running (cloud-final on a VM that has just booted, as in
# a pipeline) writes /var/lib/cloud again when it ends, after the clean (linux.md (a) 1).
# The test is cloud-init's own (cmd/status.py, is_running in 25.x, get_status_details in
# 20.4-23.x): running while its status.json exists and its result.json does not. The first
# boot stage removes result.json and the last writes it. It is read here rather than
# through `cloud-init status --wait`, which costs ~0.2 s of Python on every run and, before
# 23.4, stops waiting as soon as a stage has logged an error. A cloud-init that is disabled
# or never started this boot has no status.json and is not waited for.
run_dir=/run/cloud-init
wait_seconds={{ vars.cloud_init_wait_seconds }}
running() { [ -e "$run_dir/status.json" ] && [ ! -e "$run_dir/result.json" ]; }
if ! running; then
  echo "cloud-init is not running"
  exit 0
fi
echo "cloud-init is still running: waiting up to ${wait_seconds} s for it to finish"
deadline=$((SECONDS + wait_seconds))
while running; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "cloud-init has not finished after ${wait_seconds} s ($run_dir/status.json without result.json: a boot stage still runs or died; see cloud-init status --long)" >&2
    exit 1
  fi
  sleep 1
done
echo "cloud-init finished"

set -eu
# -force skips the y/n prompt that would wait forever without a terminal
# (linux.md (c) 14). A transient unit keeps it running whatever happens to this
# session (the user being deleted may be the one logged in); --pipe --wait still
# hand back its output and exit code.
out=$(mktemp /run/imageprep-waagent.XXXXXX)
trap 'rm -f "$out"' EXIT
set +e
systemd-run --wait --pipe --collect --quiet --unit=imageprep-deprovision \
  -- waagent -force -deprovision+user </dev/null 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
# waagent's main() catches any exception of an action, logs "Failed to run
# 'deprovision+user': ..." and returns, so it exits 0 with the remaining actions
# (root lock, /var/lib/waagent, the user) never run (Azure/WALinuxAgent
# azurelinuxagent/agent.py main(); pa/deprovision/default.py do_actions). On
# Python >= 3.10 agents before 2.10 crash formatting that message instead
# (exit 1, "op=UnhandledError"). Either way its output is the evidence.
failure=$(grep -E -m 1 "Failed to run '|op=UnhandledError|^[A-Za-z]*Error: " "$out" || true)
if [ -n "$failure" ]; then
  echo "waagent reported a failure (exit code $rc): $failure" >&2
  exit 1
fi
exit "$rc"

set -eu
# Logs truncated while rsyslog and auditd run fill up again before the capture
# (issue 10, item 4). Here, after the point of no return: the VM powers off next.
[ -d /run/systemd/system ] || exit 0
active() { systemctl is-active --quiet "$1" 2>/dev/null; }
# The socket in the same call, or socket activation starts rsyslog again at the
# next message (rsyslog.service Requires= syslog.socket on Debian and Ubuntu).
stop=()
for u in {{ vars.log_writer_units }}; do
  if active "$u"; then stop+=("$u"); fi
done
if [ "${#stop[@]}" -gt 0 ]; then systemctl stop "${stop[@]}"; echo "stopped: ${stop[*]}"; fi
if active auditd.service; then
  # RHEL's auditd.service has RefuseManualStop=yes, so systemctl refuses; Red Hat
  # documents `service auditd stop`, which runs the audit package's legacy action
  # (auditctl --signal stop). Where `service` maps to systemctl (Debian, Ubuntu,
  # SUSE) the unit may carry the same setting, so the signal is sent directly.
  service auditd stop 2>/dev/null || auditctl --signal stop 2>/dev/null ||
    kill -TERM "$(systemctl show -p MainPID --value auditd.service)"
  # auditd writes its DAEMON_END record while it exits: wait for it.
  for _ in $(seq 1 100); do active auditd.service || break; sleep 0.1; done
  if active auditd.service; then echo "auditd did not stop" >&2; exit 1; fi
  echo "stopped: auditd.service"
fi

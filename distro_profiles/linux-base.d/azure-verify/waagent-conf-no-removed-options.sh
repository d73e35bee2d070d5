set -eu
left=""
for key in {{ vars.waagent_removed_options }}; do
  if grep -Eq "^[[:space:]]*${key//./\\.}[[:space:]]*=" /etc/waagent.conf; then left="$left $key"; fi
done
if [ -n "$left" ]; then
  echo "/etc/waagent.conf still sets:$left (no effect since 2.2.45)" >&2
  exit 1
fi

set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
f=/var/lib/waagent/ovf-env.xml
if [ ! -f "$f" ]; then
  # waagent would only warn and delete nobody (linux.md (c) 1).
  echo "$f is gone: waagent -deprovision+user would not delete $user" >&2
  exit 1
fi
named=$(sed -n 's:.*<\([A-Za-z0-9_]*\:\)\{0,1\}UserName>\([^<]*\)<.*:\2:p' "$f" | head -n 1)
if [ "$named" != "$user" ]; then
  echo "$f names user '$named', not '$user'" >&2
  exit 1
fi

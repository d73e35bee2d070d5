set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
if [ -z "$user" ]; then
  # waagent takes the user from ovf-env.xml and silently deletes nobody without it
  # (linux.md (c) 1).
  echo "no user to deprovision: /var/lib/waagent/ovf-env.xml names none; set the var deprovision_user" >&2
  exit 1
fi

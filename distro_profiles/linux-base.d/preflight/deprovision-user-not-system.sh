set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
uid=$(id -u "$user")
min=$(awk '$1 == "UID_MIN" { print $2 }' /etc/login.defs 2>/dev/null || true)
min=${min:-1000}
if [ "$uid" -lt "$min" ]; then
  echo "refusing to deprovision $user: uid $uid is below UID_MIN $min (root or a system account)" >&2
  exit 1
fi

set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
# cloud-init only ever appends to 90-cloud-init-users and nobody cleans it
# (linux.md (a) 14; Azure/WALinuxAgent#3663). Stage the edit under a name with a
# dot (sudo ignores it), check it with visudo, then move it into place.
for f in /etc/sudoers.d/90-cloud-init-users /etc/sudoers.d/waagent; do
  [ -f "$f" ] || continue
  staged="/etc/sudoers.d/.imageprep-${f##*/}"
  awk -v u="$user" '!($1 == u || $0 == "# User rules for " u)' "$f" > "$staged"
  chmod 0440 "$staged"
  if ! visudo -c -q -f "$staged" >/dev/null; then
    rm -f "$staged"
    echo "the cleaned copy of $f does not pass visudo -c; left unchanged" >&2
    exit 1
  fi
  mv -f "$staged" "$f"
done
visudo -c -q

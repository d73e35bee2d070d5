set -eu
f=/etc/kernel/cmdline
# RHEL 9 has it (kernel-install reads it); RHEL 8 installs may not.
[ -f "$f" ] || { echo "no $f"; exit 0; }
line=" $(cat "$f") " bad=""
for a in {{ vars.cmdline_add }}; do [[ "$line" == *" $a "* ]] || bad="$bad missing:$a"; done
for r in {{ vars.cmdline_remove }}; do [[ "$line" != *" $r "* ]] || bad="$bad present:$r"; done
if [ -n "$bad" ]; then
  echo "$f:$bad" >&2
  exit 1
fi

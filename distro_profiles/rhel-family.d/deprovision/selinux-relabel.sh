set -eu
# Files replaced by mv keep the label of where they were made; restorecon puts
# the policy's labels back (RK runs fixfiles; linux.md (a) 31, (e) 4).
if ! command -v selinuxenabled >/dev/null 2>&1 || ! selinuxenabled; then
  echo "SELinux is disabled: nothing to relabel"
  exit 0
fi
paths=()
for p in {{ vars.selinux_relabel_paths }}; do
  if [ -e "$p" ]; then paths+=("$p"); fi
done
restorecon -R "${paths[@]}"

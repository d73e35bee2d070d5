set -eu
# Azure puts swap on the resource disk (cloud-init or waagent), never on the OS
# disk (linux.md (b) common requirements, (a) 21). Entries stay in fstab,
# commented, so the change is visible and reversible.
swaps=$(awk '$0 !~ /^[[:space:]]*#/ && $3 == "swap" { print $1 }' /etc/fstab 2>/dev/null || true)
[ -n "$swaps" ] || { echo "no swap in /etc/fstab"; exit 0; }
for s in $swaps; do
  if [ -f "$s" ] && grep -q "^${s}[[:space:]]" /proc/swaps; then swapoff "$s"; fi
done
tmp=$(mktemp /etc/fstab.imageprep.XXXXXX)
awk '$0 !~ /^[[:space:]]*#/ && $3 == "swap" { print "#imageprep-azure-ready: " $0; next } { print }' \
  /etc/fstab > "$tmp"
chown root:root "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" /etc/fstab
for s in $swaps; do
  # A swap file on / takes OS-disk space in every clone; partitions are left alone.
  if [ -f "$s" ]; then rm -f "$s"; echo "removed swap file $s"; fi
done

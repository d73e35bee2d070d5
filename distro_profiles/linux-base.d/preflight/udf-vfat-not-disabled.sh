set -eu
# udf reads the provisioning media, vfat the EFI partition; hardening guides
# disable them (linux.md (b) common requirements; Azure/WALinuxAgent#2025), as
# `install udf /bin/false` (CIS), `/usr/bin/true` on merged-/usr systems, or
# `blacklist udf`. Every directory modprobe.d(5) reads that the image carries;
# /lib/modprobe.d once where /lib is /usr/lib (merged /usr).
dirs="/etc/modprobe.d /usr/lib/modprobe.d /usr/local/lib/modprobe.d"
[ /lib -ef /usr/lib ] || dirs="$dirs /lib/modprobe.d"
hits=""
for d in $dirs; do
  found=$(grep -EHs '^[[:space:]]*(install[[:space:]]+(udf|vfat)[[:space:]]+(/usr)?/bin/(true|false)|blacklist[[:space:]]+(udf|vfat)\b)' \
            "$d"/*.conf | tr '\n' ' ' || true)
  hits="$hits$found"
done
if [ -n "$hits" ]; then
  echo "udf or vfat is disabled: $hits" >&2
  exit 1
fi

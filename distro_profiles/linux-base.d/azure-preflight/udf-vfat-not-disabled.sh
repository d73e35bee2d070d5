set -eu
# udf reads the provisioning media, vfat the EFI partition; hardening guides
# disable them (linux.md (b) common requirements; Azure/WALinuxAgent#2025).
hits=$(grep -EHs '^[[:space:]]*(install[[:space:]]+(udf|vfat)[[:space:]]+/bin/(true|false)|blacklist[[:space:]]+(udf|vfat)\b)' \
         /etc/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf /lib/modprobe.d/*.conf | tr '\n' ' ' || true)
if [ -n "$hits" ]; then
  echo "udf or vfat is disabled: $hits" >&2
  exit 1
fi

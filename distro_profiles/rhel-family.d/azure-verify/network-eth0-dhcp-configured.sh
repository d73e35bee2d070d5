set -eu
for f in /etc/NetworkManager/system-connections/*; do
  [ -f "$f" ] || continue
  grep -qx 'interface-name=eth0' "$f" || continue
  # method= of the [ipv4] section
  m=$(awk -F= '/^\[/ { s = $0 } s == "[ipv4]" && $1 == "method" { print $2 }' "$f")
  if [ "$m" = auto ]; then exit 0; fi
  echo "$f configures eth0 with ipv4.method=$m: Azure assigns addresses by DHCP" >&2
  exit 1
done
f=/etc/sysconfig/network-scripts/ifcfg-eth0
if [ -f "$f" ]; then
  if grep -Eq '^BOOTPROTO="?dhcp"?$' "$f"; then exit 0; fi
  echo "$f does not use BOOTPROTO=dhcp: Azure assigns addresses by DHCP" >&2
  exit 1
fi
echo "no NetworkManager profile for eth0" >&2
exit 1

set -eu
d=/etc/sysconfig/network
mkdir -p "$d"
if [ ! -e "$d/ifcfg-eth0" ]; then
  tmp=$(mktemp "$d/.ifcfg-eth0.imageprep.XXXXXX")
  printf '%s\n' "BOOTPROTO='dhcp'" "STARTMODE='auto'" "DHCLIENT_SET_DEFAULT_ROUTE='yes'" > "$tmp"
  chown root:root "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$d/ifcfg-eth0"
  echo "written: $d/ifcfg-eth0"
fi
# Azure names the VM; a DHCP-supplied name must not replace it (MS SLES page).
f=$d/dhcp
line='DHCLIENT_SET_HOSTNAME="no"'
if [ -f "$f" ] && grep -qx "$line" "$f" && [ "$(grep -c '^DHCLIENT_SET_HOSTNAME=' "$f")" = 1 ]; then
  echo "unchanged: $f"; exit 0
fi
tmp=$(mktemp "$d/.dhcp.imageprep.XXXXXX")
if [ -f "$f" ]; then
  awk -v line="$line" '/^DHCLIENT_SET_HOSTNAME=/ { if (!done) print line; done = 1; next } { print }
                        END { if (!done) print line }' "$f" > "$tmp"
else
  printf '%s\n' "$line" > "$tmp"
fi
chown root:root "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$f"
echo "updated: $f"

set -eu
list=/run/imageprep-ifcfg-placeholders
if [ -f "$list" ]; then
  while IFS= read -r f; do rm -f -- "$f"; done < "$list"
  rm -f "$list"
fi
# In a real ifcfg file (RHEL 8) waagent replaced any DHCP_HOSTNAME line with
# localhost.localdomain; a clone would send that name to Azure's DHCP server.
for f in /etc/sysconfig/network-scripts/ifcfg-*; do
  [ -f "$f" ] || continue
  grep -qx 'DHCP_HOSTNAME=localhost.localdomain' "$f" || continue
  tmp=$(mktemp "$f.imageprep.XXXXXX")
  grep -vx 'DHCP_HOSTNAME=localhost.localdomain' "$f" > "$tmp" || true
  chown --reference="$f" "$tmp"; chmod --reference="$f" "$tmp"
  mv -f "$tmp" "$f"
  echo "removed DHCP_HOSTNAME=localhost.localdomain from $f"
done

set -eu
# The places waagent cleans (linux.md (a) 8) plus NetworkManager's internal client
# (internal-*.lease). systemd-networkd keeps its leases in /run only.
for dir in /var/lib/dhcp /var/lib/dhclient /var/lib/dhcpcd; do
  if [ -d "$dir" ]; then
    find "$dir" -mindepth 1 -maxdepth 1 -type f -delete
  fi
done
rm -f -- /var/lib/NetworkManager/*.lease /var/lib/NetworkManager/*.leases
# wicked (SUSE) keeps leases and the DHCP client ids (duid.xml, iaid.xml) here.
if [ -d /var/lib/wicked ]; then find /var/lib/wicked -mindepth 1 -maxdepth 1 -type f -delete; fi

set -eu
if ! grep -Eq "^BOOTPROTO=['\"]?dhcp" /etc/sysconfig/network/ifcfg-eth0 2>/dev/null; then
  echo "/etc/sysconfig/network/ifcfg-eth0 does not configure DHCP" >&2
  exit 1
fi
if ! grep -qx 'DHCLIENT_SET_HOSTNAME="no"' /etc/sysconfig/network/dhcp 2>/dev/null; then
  echo 'DHCLIENT_SET_HOSTNAME="no" is not set in /etc/sysconfig/network/dhcp' >&2
  exit 1
fi

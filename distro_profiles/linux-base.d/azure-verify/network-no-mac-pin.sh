set -eu
# A clone gets a new MAC: a configuration matching the old one leaves it without
# network (canonical/cloud-init#3611; linux.md (c) 7).
hits=$(grep -EHsi '^[[:space:]]*(HWADDR|MACADDR|LLADDR)=|^[[:space:]]*mac-address[[:space:]]*=|^[[:space:]]*macaddress:|^[[:space:]]*MACAddress=|^[[:space:]]*hwaddress[[:space:]]' \
         /etc/sysconfig/network-scripts/ifcfg-* /etc/sysconfig/network/ifcfg-* \
         /etc/NetworkManager/system-connections/* /etc/netplan/*.yaml \
         /etc/systemd/network/*.network /etc/systemd/network/*.link \
         /etc/network/interfaces /etc/network/interfaces.d/* /etc/udev/rules.d/70-persistent-net.rules \
       | grep -Ev ':[[:space:]]*#' | tr '\n' ' ' || true)
if [ -n "$hits" ]; then
  echo "MAC-pinned network configuration: $hits" >&2
  exit 1
fi

set -eu
put() {  # put PATH MODE < content: root:root, MODE; replaced only when it differs
  local tmp
  mkdir -p "$(dirname "$1")"
  tmp=$(mktemp "$1.imageprep.XXXXXX")
  cat > "$tmp"
  chown root:root "$tmp"
  chmod "$2" "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; echo "unchanged: $1"
  else mv -f "$tmp" "$1"; echo "written: $1"; fi
}
# Accelerated networking's VFs (Mellanox mlx4/mlx5, and MANA on newer VM sizes,
# driver `mana`) are bonded by the kernel to the synthetic NIC; NetworkManager
# must not configure them (MS RHEL 8/9 page; MS "Microsoft Azure Network
# Adapter (MANA) overview": Linux images must leave MANA VFs unmanaged).
put /etc/NetworkManager/conf.d/99-azure-unmanaged-devices.conf 0644 <<'EOF'
# Written by imageprep (azure-ready): accelerated networking VFs are not NetworkManager's.
[keyfile]
unmanaged-devices=driver:mlx4_core;driver:mlx5_core;driver:mana
EOF
# An existing eth0 profile is the user's: it is kept (the verify step checks that
# it uses DHCP, as Azure requires).
if grep -lqs '^interface-name=eth0$' /etc/NetworkManager/system-connections/* ||
   [ -e /etc/sysconfig/network-scripts/ifcfg-eth0 ]; then
  echo "an eth0 profile exists; kept"
  exit 0
fi
nm_format={{ vars.nm_profile_format }}
if [ "$nm_format" = keyfile ]; then
  # NetworkManager ignores keyfiles not owned by root with mode 0600.
  put /etc/NetworkManager/system-connections/eth0.nmconnection 0600 <<'EOF'
[connection]
id=eth0
type=ethernet
interface-name=eth0
autoconnect=true

[ipv4]
method=auto
dhcp-timeout=300

[ipv6]
method=auto
EOF
else
  put /etc/sysconfig/network-scripts/ifcfg-eth0 0644 <<'EOF'
DEVICE=eth0
NAME=eth0
TYPE=Ethernet
ONBOOT=yes
BOOTPROTO=dhcp
DHCP_TIMEOUT=300
USERCTL=no
PEERDNS=yes
IPV6INIT=no
NM_CONTROLLED=yes
PERSISTENT_DHCLIENT=yes
EOF
fi

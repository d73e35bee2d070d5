set -eu
# A clone gets a new MAC; a profile bound to the old one never comes up
# (virt-sysprep net-hwaddr; linux.md (a) 10). Only formats where dropping the
# key leaves a profile bound by interface name are edited: ifcfg (HWADDR=,
# MACADDR=; SUSE LLADDR=) and keyfiles (mac-address=). Netplan, networkd and
# ifupdown files that match by MAC are reported by the verify step instead.
edit() {  # edit FILE AWK-PROGRAM: rewrite FILE in place when the program changes it
  local f=$1 tmp
  tmp=$(mktemp "$f.imageprep.XXXXXX")
  awk "$2" "$f" > "$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; return; fi
  chown --reference="$f" "$tmp"; chmod --reference="$f" "$tmp"
  mv -f "$tmp" "$f"
  echo "unpinned: $f"
}
for f in /etc/sysconfig/network-scripts/ifcfg-* /etc/sysconfig/network/ifcfg-*; do
  [ -f "$f" ] || continue
  case "$f" in */ifcfg-lo) continue ;; esac
  edit "$f" '!/^[[:space:]]*(HWADDR|MACADDR|LLADDR)=/'
done
for f in /etc/NetworkManager/system-connections/*; do
  [ -f "$f" ] || continue
  edit "$f" '!/^[[:space:]]*mac-address[[:space:]]*=/'
done

set -eu
# waagent's deprovision resets the DHCP hostname by rewriting
# /etc/sysconfig/network-scripts/ifcfg-<primary NIC> (Redhat6xOSUtil.set_dhcp_hostname,
# inherited by RedhatOSUtil and RedhatOSModernUtil, azurelinuxagent/common/osutil/
# redhat.py; fileutil.update_conf_file reads the file first). With NetworkManager
# keyfiles only the read raises and every later action is skipped (issue 10).
# waagent picks the primary NIC itself (osutil get_if_name: the first interface
# with an IPv4 address), so every NIC gets one; netlink (ip), not /sys/class/net,
# which shows the namespace sysfs was mounted in.
d=/etc/sysconfig/network-scripts
list=/run/imageprep-ifcfg-placeholders
mkdir -p "$d"
touch "$list"
for n in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
  [ "$n" != lo ] || continue
  f="$d/ifcfg-$n"
  [ -e "$f" ] && continue
  printf '# imageprep: placeholder for waagent -deprovision, removed after it\n' > "$f"
  echo "$f" >> "$list"
  echo "placeholder: $f"
done

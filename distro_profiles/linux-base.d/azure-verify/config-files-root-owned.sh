set -eu
bad=""
for f in /etc/waagent.conf /etc/default/grub /etc/default/grub.d/*.cfg /etc/fstab \
         /etc/cloud/cloud.cfg.d/91-azure_datasource.cfg /etc/cloud/cloud.cfg.d/10-azure-kvp.cfg \
         /etc/dracut.conf.d/azure.conf /etc/initramfs-tools/modules \
         /etc/NetworkManager/conf.d/99-azure-unmanaged-devices.conf \
         /etc/NetworkManager/system-connections/* /etc/sysconfig/network-scripts/ifcfg-eth0 \
         /etc/sysconfig/network/ifcfg-eth0 /etc/sysconfig/network/dhcp; do
  [ -f "$f" ] || continue
  st=$(stat -c '%U:%G %a' "$f")
  mode=${st#* }
  case "$st" in root:root*) ;; *) bad="$bad $f($st)"; continue ;; esac
  # No write bit for group or others (mode digits 2, 3, 6, 7 in those places).
  case "${mode: -2}" in *[2367]*) bad="$bad $f($st)" ;; esac
  case "$f" in
    /etc/NetworkManager/system-connections/*) [ "$mode" = 600 ] || bad="$bad $f($st: NetworkManager ignores keyfiles that are not 0600)" ;;
  esac
done
if [ -n "$bad" ]; then
  echo "wrong owner or mode:$bad" >&2
  exit 1
fi

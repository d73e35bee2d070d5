set -eu
left=""
for f in /etc/cloud/cloud.cfg.d/50-curtin-networking.cfg \
         /etc/cloud/cloud.cfg.d/curtin-preserve-sources.cfg \
         /etc/cloud/cloud.cfg.d/99-installer.cfg \
         /etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg \
         /etc/cloud/cloud.cfg.d/90-installer-network.cfg \
         /etc/cloud/ds-identify.cfg /etc/netplan/00-installer-config.yaml \
         /etc/netplan/00-installer-config-wifi.yaml; do
  if [ -e "$f" ]; then left="$left $f"; fi
done
if [ -n "$left" ]; then
  echo "installer files left:$left" >&2
  exit 1
fi

set -eu
# Who provisions a clone: waagent's Provisioning.Agent. `cloud-init` hands provisioning
# to cloud-init; `auto` does so when cloud-init-local.service is enabled, which is all it
# asks (WALinuxAgent pa/provision/cloudinitdetect.py: the unit file state). But cloud-init
# does not run at all when /etc/cloud/cloud-init.disabled exists or the kernel command
# line says cloud-init=disabled (systemd/cloud-init-generator.tmpl in 20.4, ds-identify's
# is_disabled in 25.x), with its units still enabled. Then nothing provisions a clone: the
# golden VM generalizes cleanly and every deployment of the image times out.
disabled=""
[ ! -e /etc/cloud/cloud-init.disabled ] || disabled="/etc/cloud/cloud-init.disabled exists"
# Where the clones' kernel command line comes from: GRUB's defaults, or the BLS entries
# and /etc/kernel/cmdline.
for f in /etc/default/grub /etc/default/grub.d/*.cfg /etc/kernel/cmdline /boot/loader/entries/*.conf; do
  if [ -f "$f" ] && grep -qsw -- 'cloud-init=disabled' "$f"; then
    disabled="${disabled:+$disabled; }$f has cloud-init=disabled"
  fi
done
unit=$(systemctl is-enabled cloud-init-local.service 2>/dev/null || true)
# cloud-init runs on the clones: whoever provisions, nothing waits for a missing agent.
[ -n "$disabled" ] || [ "$unit" != enabled ] || exit 0
# The agent's own reading of waagent.conf (only asked here: it starts Python, ~0.2 s).
agent=$(waagent -show-configuration | sed -n 's/^Provisioning\.Agent = //p')
case "$agent" in
  cloud-init) [ "$unit" = enabled ] || disabled="${disabled:+$disabled; }cloud-init-local.service is ${unit:-missing}" ;;
  auto) [ "$unit" = enabled ] || { echo "cloud-init-local.service is ${unit:-missing}: waagent provisions (Provisioning.Agent=auto)"; exit 0; } ;;
  *) echo "cloud-init does not run on the clones; waagent's Provisioning.Agent is ${agent:-not shown}"; exit 0 ;;
esac
echo "waagent leaves provisioning to cloud-init (Provisioning.Agent=$agent), but cloud-init would not run on a clone: $disabled." \
  "No clone would provision: enable cloud-init again, or set Provisioning.Agent=waagent in /etc/waagent.conf" >&2
exit 1

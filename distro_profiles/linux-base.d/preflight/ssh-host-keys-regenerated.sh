set -eu
# Cleanup removes the host keys; without a generator sshd does not start on clones
# (linux.md (a) 2; vagrant-libvirt#873). Debian and Ubuntu rely on cloud-init's ssh
# module, the RHEL family on sshd-keygen, others on a unit running ssh-keygen -A.
if command -v cloud-init >/dev/null 2>&1 && [ ! -e /etc/cloud/cloud-init.disabled ] &&
   grep -Eqs '^[[:space:]]*-[[:space:]]*(\[[[:space:]]*)?(cc_)?ssh[[:space:]]*(,|\]|$)' \
     /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg; then
  exit 0
fi
for dir in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
  # ssh-keygen -A (generic units), sshd-keygen@.service (RHEL family),
  # sshd-gen-keys-start in sshd.service (SUSE).
  if grep -Eqs 'ssh-keygen[[:space:]]+-A|sshd-keygen|sshd-gen-keys-start' "$dir"/*.service; then
    exit 0
  fi
done
echo "nothing regenerates SSH host keys at boot (no cloud-init ssh module, no ssh-keygen -A unit): clones would have no sshd" >&2
exit 1

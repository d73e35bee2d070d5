set -eu
# cloud-init's mounts module marks every /etc/fstab line it writes with the mount option
# comment=cloudconfig (cc_mounts.MNT_COMMENT; the same marker from 17.2 to 25.x). On Azure
# those are the resource disk, /dev/disk/cloud/azure_resource-part1 on /mnt, and its swap.
# A clone on a VM size without a temp disk then waits for that device at boot (linux.md (a) 20,
# actions/runner-images PR #14753: about 90 s). cloud-init 25.2 drops these lines itself in
# `clean --configs fstab` (and `all`: cmd/clean.py calls cc_mounts.cleanup_fstab); this
# step does the same for older releases. On first boot cc_mounts writes them again from the
# clone's own config, as it does after 25.2's clean.
# sed -i writes a new file and renames it over /etc/fstab, keeping its owner, mode and, with
# GNU sed's SELinux support, its context; --follow-symlinks edits the file a link points to.
fstab=/etc/fstab
if [ -f "$fstab" ] && grep -q 'comment=cloudconfig' "$fstab"; then
  sed -i --follow-symlinks '/comment=cloudconfig/d' "$fstab"
  echo "removed cloud-init's fstab lines (comment=cloudconfig)"
fi

set -eu
# Here, not in cleanup: unregistering is undone by registering again, not by the
# backup, so it waits until preflight and the ovf-env check passed. Clones of a
# registered image would share one consumer identity (virt-sysprep
# rh-subscription-manager; linux.md (a) 26).
if command -v subscription-manager >/dev/null 2>&1; then
  if subscription-manager identity >/dev/null 2>&1; then
    subscription-manager unregister
  fi
  subscription-manager clean
fi
# Oracle Linux ULN and old RHN registrations (virt-sysprep rhn-systemid).
rm -f /etc/sysconfig/rhn/systemid

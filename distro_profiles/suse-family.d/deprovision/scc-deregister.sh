set -eu
# Here, not in cleanup: deregistering is undone by registering again, not by the
# backup. Clones must not share one registration (SUSE Public Cloud Guide 3.2).
#
# Pay-as-you-go (instance-flavor-check exit 10; SUSE-Enceladus/
# instance-billing-flavor-check README.md): `registercloudguest --clean` only
# (doc/man/man1/registercloudguest.1: "Use this option when creating new images
# from running instances"). SUSEConnect refuses --de-register on any system with
# /usr/sbin/registercloudguest, pay-as-you-go or BYOS (SUSE/connect-ng
# internal/connect/client.go Deregister, bsc#1230861), so a BYOS system that has
# the cloud client is cleaned by it as well: its clean_all_standard also
# deregisters SCC-connected systems (cloud-regionsrv-client
# cloudregister/registerutils.py deregister_from_SCC). BYOS without it (11, or 12
# = unknown, which the tool reports as BYOS): `SUSEConnect --de-register` while
# registered, then `SUSEConnect --cleanup` (docs/SUSEConnect.8.md).
flavor=BYOS
if command -v instance-flavor-check >/dev/null 2>&1; then
  rc=0
  out=$(instance-flavor-check 2>&1) || rc=$?
  case "$rc" in
    10) flavor=PAYG ;;
    11|12) ;;
    *) echo "instance-flavor-check exited $rc ($out): cannot tell pay-as-you-go from BYOS" >&2; exit 1 ;;
  esac
fi
if [ "$flavor" = PAYG ] || command -v registercloudguest >/dev/null 2>&1; then
  if ! command -v registercloudguest >/dev/null 2>&1; then
    echo "pay-as-you-go instance without registercloudguest: cannot deregister it" >&2
    exit 1
  fi
  registercloudguest --clean
  echo "deregistered ($flavor) with registercloudguest --clean"
elif command -v SUSEConnect >/dev/null 2>&1; then
  if [ -f /etc/zypp/credentials.d/SCCcredentials ]; then
    SUSEConnect --de-register
  fi
  SUSEConnect --cleanup
fi
# Both tools log each run, and the logs were truncated in cleanup.
for f in /var/log/instance_billing_flavor_check /var/log/cloudregister; do
  if [ -f "$f" ]; then : > "$f"; fi
done

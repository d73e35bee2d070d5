set -eu
# instance-flavor-check (SUSE-Enceladus/instance-billing-flavor-check README.md,
# "exit codes"): 10 pay-as-you-go, 11 BYOS, 12 unknown (it then answers BYOS).
# Not installed: an image that never was a SUSE public-cloud image (BYOS).
command -v instance-flavor-check >/dev/null 2>&1 || { echo "no instance-flavor-check: BYOS"; exit 0; }
rc=0
out=$(instance-flavor-check 2>&1) || rc=$?
case "$rc" in
  10)
    if ! command -v registercloudguest >/dev/null 2>&1; then
      echo "instance-flavor-check says pay-as-you-go but registercloudguest (cloud-regionsrv-client) is not installed: nothing can deregister this instance from SUSE's update infrastructure" >&2
      exit 1
    fi
    echo "pay-as-you-go: registercloudguest --clean will deregister it" ;;
  11|12) echo "BYOS (instance-flavor-check exit $rc: $out)" ;;
  *)
    echo "instance-flavor-check exited $rc ($out): cannot tell pay-as-you-go from BYOS" >&2
    exit 1 ;;
esac

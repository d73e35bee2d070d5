set -eu
# Microsoft's SLES page activates it (`SUSEConnect -p
# sle-module-public-cloud/15.x/x86_64`) before `zypper install python-azure-agent`.
# Only asked when something is to be installed.
missing=""
for p in {{ vars.azure_packages }}; do
  rpm -q --quiet --whatprovides "$p" || missing="$missing $p"
done
if [ -z "$missing" ]; then echo "nothing to install"; exit 0; fi
if ! command -v SUSEConnect >/dev/null 2>&1; then
  echo "SUSEConnect not found: cannot tell whether the Public Cloud Module is active (to install$missing)" >&2
  exit 1
fi
# --status: JSON, one object per installed product with "identifier" and "status"
# "Registered" or "Not Registered" (SUSE/connect-ng internal/connect/status.go).
status=$(SUSEConnect --status) || { echo "SUSEConnect --status failed: $status" >&2; exit 1; }
if ! printf '%s' "$status" | python3 -c 'import json, sys
sys.exit(0 if any(p.get("identifier") == "sle-module-public-cloud" and p.get("status") == "Registered" for p in json.load(sys.stdin)) else 1)'; then
  # shellcheck source=/dev/null # the target's file
  . /etc/os-release
  echo "the Public Cloud Module is not active (needed to install$missing): run SUSEConnect -p sle-module-public-cloud/${VERSION_ID}/$(uname -m)" >&2
  exit 1
fi
echo "the Public Cloud Module is active"

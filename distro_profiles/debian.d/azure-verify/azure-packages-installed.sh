set -eu
missing=""
for p in {{ vars.azure_packages }}; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  echo "not installed:$missing" >&2
  exit 1
fi

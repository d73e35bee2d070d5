set -eu
missing=""
for p in {{ vars.azure_packages }}; do
  rpm -q --quiet --whatprovides "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "not installed:$missing" >&2
  exit 1
fi

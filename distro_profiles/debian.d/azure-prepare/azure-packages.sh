set -eu
missing=()
for p in {{ vars.azure_packages }}; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" = 0 ]; then
  echo "already installed: {{ vars.azure_packages }}"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

set -eu
missing=()
for p in {{ vars.azure_packages }}; do
  rpm -q --quiet --whatprovides "$p" || missing+=("$p")
done
if [ "${#missing[@]}" = 0 ]; then
  echo "already installed: {{ vars.azure_packages }}"
  exit 0
fi
dnf install -y "${missing[@]}"

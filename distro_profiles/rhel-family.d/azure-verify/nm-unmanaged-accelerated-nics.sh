set -eu
conf=$(cat /etc/NetworkManager/conf.d/*.conf /etc/NetworkManager/NetworkManager.conf 2>/dev/null || true)
bad=""
for d in mlx4_core mlx5_core mana; do
  grep -Eq "^[[:space:]]*unmanaged-devices=.*driver:$d(;|[[:space:]]*$)" <<<"$conf" || bad="$bad $d"
done
if [ -n "$bad" ]; then
  echo "NetworkManager would manage the VFs of:$bad" >&2
  exit 1
fi

set -eu
drivers=({{ vars.hv_drivers }})
tool={{ vars.initramfs_tool }}
# 1. Configuration, so every future kernel's image has them too.
if [ "$tool" = initramfs-tools ]; then
  f=/etc/initramfs-tools/modules
  for m in "${drivers[@]}"; do
    if ! grep -qx "$m" "$f" 2>/dev/null; then
      printf '%s\n' "$m" >> "$f"
      echo "added $m to $f"
    fi
  done
  chown root:root "$f"
else
  f=/etc/dracut.conf.d/azure.conf
  want="add_drivers+=\" ${drivers[*]} \""
  if [ "$(cat "$f" 2>/dev/null)" != "$want" ]; then
    mkdir -p /etc/dracut.conf.d
    tmp=$(mktemp "$f.imageprep.XXXXXX")
    printf '%s\n' "$want" > "$tmp"
    chown root:root "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$f"
    echo "written: $f"
  fi
fi
# 2. Rebuild only when an installed kernel's image lacks a driver (a driver built
# into the kernel needs no module).
rebuild=""
for dir in /lib/modules/*/; do
  k=$(basename "$dir")
  [ -e "/boot/vmlinuz-$k" ] || [ -e "$dir/vmlinuz" ] || continue
  img=""
  for c in "/boot/initramfs-$k.img" "/boot/initrd.img-$k" "/boot/initrd-$k"; do
    if [ -e "$c" ]; then img=$c; break; fi
  done
  if [ -z "$img" ]; then rebuild="$rebuild $k(no image)"; continue; fi
  listing=$({{ vars.initramfs_lister }} "$img")
  for m in "${drivers[@]}"; do
    if grep -qs "/$m\.ko" "$dir/modules.builtin"; then continue; fi
    if ! grep -q "/$m\.ko" <<<"$listing"; then rebuild="$rebuild $k($m)"; break; fi
  done
done
if [ -z "$rebuild" ]; then
  echo "every initramfs already has ${drivers[*]}"
  exit 0
fi
echo "rebuilding, missing:$rebuild"
{{ vars.initramfs_rebuild }}

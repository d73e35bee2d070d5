set -eu
drivers=({{ vars.hv_drivers }})
bad="" n=0
for dir in /lib/modules/*/; do
  k=$(basename "$dir")
  [ -e "/boot/vmlinuz-$k" ] || [ -e "$dir/vmlinuz" ] || continue
  img=""
  for c in "/boot/initramfs-$k.img" "/boot/initrd.img-$k" "/boot/initrd-$k"; do
    if [ -e "$c" ]; then img=$c; break; fi
  done
  if [ -z "$img" ]; then bad="$bad $k:no-initramfs"; continue; fi
  n=$((n + 1))
  listing=$({{ vars.initramfs_lister }} "$img")
  for m in "${drivers[@]}"; do
    grep -qs "/$m\.ko" "$dir/modules.builtin" && continue
    grep -q "/$m\.ko" <<<"$listing" || bad="$bad $img:$m"
  done
done
if [ "$n" = 0 ] && [ -z "$bad" ]; then echo "no installed kernel found under /lib/modules" >&2; exit 1; fi
if [ -n "$bad" ]; then
  echo "Hyper-V drivers missing from the initramfs:$bad" >&2
  exit 1
fi

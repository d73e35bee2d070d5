set -eu
# shellcheck disable=SC2054 # the values are words with commas (console=ttyS0,115200n8)
add=({{ vars.cmdline_add }})
remove=({{ vars.cmdline_remove }})
# RHEL 8 on UEFI boots the vendor's EFI grub.cfg; RHEL 9's is a stub that loads
# /boot/grub2/grub.cfg (so it is left alone).
out={{ vars.grub_cfg }}
if [ -d /sys/firmware/efi ]; then
  for c in /boot/efi/EFI/*/grub.cfg; do
    case "$c" in */EFI/BOOT/*) continue ;; esac
    if [ -f "$c" ] && ! grep -q configfile "$c"; then out=$c; fi
  done
fi
grub2-mkconfig -o "$out"
# BLS entries carry their own options. One `grubby --update-kernel=ALL` for all of
# them (only when one differs: a second run calls no grubby update): RHEL 9's
# grubby then also carries the change into /etc/kernel/cmdline, which
# kernel-install copies into the entries of kernels installed later (RHEL 9
# "Configuring kernel command-line parameters"; issue 10, item 7).
drop=() want=()
while IFS= read -r args; do
  set -f
  for t in $args; do
    for a in "${add[@]}"; do
      if [ "${t%%=*}" = "${a%%=*}" ] && [[ " ${add[*]} " != *" $t "* ]]; then
        [[ " ${drop[*]} " == *" $t "* ]] || drop+=("$t")
        break
      fi
    done
    for r in "${remove[@]}"; do
      if [ "$t" = "$r" ] && [[ " ${drop[*]} " != *" $t "* ]]; then drop+=("$t"); fi
    done
  done
  for a in "${add[@]}"; do
    if [[ " $args " != *" $a "* ]] && [[ " ${want[*]} " != *" $a "* ]]; then want+=("$a"); fi
  done
  set +f
done < <(grubby --info=ALL | sed -n 's/^args="\(.*\)"$/\1/p')
if [ "${#drop[@]}" -gt 0 ] || [ "${#want[@]}" -gt 0 ]; then
  opts=(--update-kernel=ALL)
  if [ "${#drop[@]}" -gt 0 ]; then opts+=(--remove-args="${drop[*]}"); fi
  if [ "${#want[@]}" -gt 0 ]; then opts+=(--args="${want[*]}"); fi
  grubby "${opts[@]}"
  echo "updated every entry: -[${drop[*]}] +[${want[*]}]"
fi
# Older grubby builds leave /etc/kernel/cmdline alone: edit it the same way.
f=/etc/kernel/cmdline
if [ -f "$f" ]; then
  new=()
  set -f
  # shellcheck disable=SC2013 # the command line is words (set -f: no globbing)
  for t in $(cat "$f"); do
    keep=1
    for a in "${add[@]}"; do [ "${t%%=*}" = "${a%%=*}" ] && keep=0; done
    for r in "${remove[@]}"; do [ "$t" = "$r" ] && keep=0; done
    [ "$keep" = 0 ] || new+=("$t")
  done
  set +f
  line="${new[*]} ${add[*]}"
  if [ "$(cat "$f")" != "$line" ]; then
    tmp=$(mktemp "$f.imageprep.XXXXXX")
    printf '%s\n' "$line" > "$tmp"
    chown --reference="$f" "$tmp"; chmod --reference="$f" "$tmp"
    mv -f "$tmp" "$f"
    echo "updated: $f"
  fi
fi

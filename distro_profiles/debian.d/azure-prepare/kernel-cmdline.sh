set -eu
# A drop-in sorted last, sourced by update-grub after /etc/default/grub and the
# other drop-ins (Ubuntu cloud images set the console in 50-cloudimg-settings.cfg),
# edits whatever they set: old values of our parameters and the remove list go.
f=/etc/default/grub.d/99-imageprep-azure.cfg
# shellcheck disable=SC2054 # the values are words with commas (console=ttyS0,115200n8)
add=({{ vars.cmdline_add }})
remove=({{ vars.cmdline_remove }})
pat=""
for a in "${add[@]}"; do pat="$pat|'${a%%=*}'|'${a%%=*}='*"; done
for r in "${remove[@]}"; do pat="$pat|'$r'"; done
tmp=$(mktemp /run/imageprep-grub.XXXXXX)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Written by imageprep (azure-ready): serial console settings for Azure."
  echo "# update-grub sources this last; it edits the values set before it."
  echo "imageprep_filter() {"
  echo "  _imageprep_out="
  echo "  for _imageprep_t in \$1; do"
  echo "    case \"\$_imageprep_t\" in"
  echo "      ${pat#|}) ;;"
  echo "      *) _imageprep_out=\"\${_imageprep_out:+\$_imageprep_out }\$_imageprep_t\" ;;"
  echo "    esac"
  echo "  done"
  echo "  printf '%s' \"\$_imageprep_out\""
  echo "}"
  echo "GRUB_CMDLINE_LINUX=\"\$(imageprep_filter \"\$GRUB_CMDLINE_LINUX\")\""
  echo "GRUB_CMDLINE_LINUX=\"\${GRUB_CMDLINE_LINUX:+\$GRUB_CMDLINE_LINUX }${add[*]}\""
  echo "GRUB_CMDLINE_LINUX_DEFAULT=\"\$(imageprep_filter \"\$GRUB_CMDLINE_LINUX_DEFAULT\")\""
  printf 'GRUB_TERMINAL="%s"\n' {{ vars.grub_terminal }}
  printf 'GRUB_SERIAL_COMMAND="%s"\n' {{ vars.grub_serial_command }}
} > "$tmp"
# Refuse to install a drop-in /bin/sh cannot parse: update-grub would fail on it.
sh -n "$tmp"
mkdir -p /etc/default/grub.d
if [ -f "$f" ] && cmp -s "$tmp" "$f"; then echo "unchanged: $f"; exit 0; fi
install -o root -g root -m 0644 "$tmp" "$f"
echo "written: $f"

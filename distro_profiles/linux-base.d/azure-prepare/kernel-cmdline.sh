set -eu
f=/etc/default/grub
# shellcheck disable=SC2054 # the values are words with commas (console=ttyS0,115200n8)
add=({{ vars.cmdline_add }})
remove=({{ vars.cmdline_remove }})
# filter VALUE: VALUE without the remove list and without any old value of a
# parameter we set (console=tty0 goes when we set console=...).
filter() {
  local out=() t a drop
  set -f
  for t in $1; do
    drop=0
    for a in "${remove[@]}"; do [ "$t" = "$a" ] && drop=1; done
    for a in "${add[@]}"; do [ "${t%%=*}" = "${a%%=*}" ] && drop=1; done
    [ "$drop" = 1 ] || out+=("$t")
  done
  set +f
  printf '%s' "${out[*]}"
}
# shellcheck source=/dev/null # the target's $f, read in a subshell
value() { ( set +eu; . "$f" >/dev/null 2>&1; eval "printf '%s' \"\${$1-}\"" ); }
linux=$(filter "$(value GRUB_CMDLINE_LINUX)")
linux="${linux:+$linux }${add[*]}"
default=$(filter "$(value GRUB_CMDLINE_LINUX_DEFAULT)")
tmp=$(mktemp "$f.imageprep.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cp "$f" "$tmp"
set_var() {  # set_var NAME VALUE: NAME="VALUE" replaces the active line, or is appended
  local line
  line="$1=\"$(printf '%s' "$2" | sed 's/[\\"$`]/\\&/g')\""
  awk -v key="$1" -v line="$line" '
    $0 ~ "^[ \t]*(export[ \t]+)?" key "=" { if (!done) print line; done = 1; next }
    { print }
    END { if (!done) print line }' "$tmp" > "$tmp.new"
  mv -f "$tmp.new" "$tmp"
}
set_var GRUB_CMDLINE_LINUX "$linux"
set_var GRUB_CMDLINE_LINUX_DEFAULT "$default"
set_var GRUB_TERMINAL {{ vars.grub_terminal }}
set_var GRUB_SERIAL_COMMAND {{ vars.grub_serial_command }}
if cmp -s "$tmp" "$f"; then echo "unchanged: $f"; exit 0; fi
chown root:root "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$f"
echo "updated: $f: GRUB_CMDLINE_LINUX=\"$linux\""

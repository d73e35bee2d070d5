set -eu
f=/etc/waagent.conf
if [ ! -f "$f" ]; then
  echo "$f not found: the agent package is not installed" >&2
  exit 1
fi
tmp=$(mktemp "$f.imageprep.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cp "$f" "$tmp"
# set KEY LINE: the first active KEY= line becomes LINE, later ones go; appended
# when there is none. Comments are left alone. (Keys compared as strings.)
set_key() {
  awk -v key="$1" -v line="$2" '
    { s = $0; sub(/^[ \t]+/, "", s); eq = index(s, "=")
      k = eq ? substr(s, 1, eq - 1) : ""; sub(/[ \t]+$/, "", k) }
    k == key { if (!done && line != "") print line; done = 1; next }
    { print }
    END { if (!done && line != "") print line }' "$tmp" > "$tmp.new"
  mv -f "$tmp.new" "$tmp"
}
for kv in {{ vars.waagent_settings }}; do set_key "${kv%%=*}" "$kv"; done
for key in {{ vars.waagent_removed_options }}; do set_key "$key" ""; done
if cmp -s "$tmp" "$f"; then echo "unchanged: $f"; exit 0; fi
chown root:root "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$f"
echo "updated: $f"

set -eu
d=/etc/cloud/cloud.cfg.d
ours=$d/91-azure_datasource.cfg
if ! grep -Eq '^datasource_list:[[:space:]]*\[[[:space:]]*Azure[[:space:]]*\]' "$ours" 2>/dev/null; then
  echo "$ours does not set datasource_list: [ Azure ]" >&2
  exit 1
fi
# cloud-init reads cloud.cfg.d/*.cfg in lexical order; a later file wins.
later=""
for f in "$d"/*.cfg; do
  [[ "$f" > "$ours" ]] || continue
  if grep -Eq '^datasource_list:' "$f"; then later="$later $f"; fi
done
if [ -n "$later" ]; then
  echo "read after $ours and setting datasource_list:$later" >&2
  exit 1
fi

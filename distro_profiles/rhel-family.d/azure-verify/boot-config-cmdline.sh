set -eu
info=$(grubby --info=ALL)
n=0 bad=""
while IFS= read -r args; do
  n=$((n + 1))
  for a in {{ vars.cmdline_add }}; do
    [[ " $args " == *" $a "* ]] || bad="$bad entry $n lacks $a;"
  done
  for r in {{ vars.cmdline_remove }}; do
    [[ " $args " != *" $r "* ]] || bad="$bad entry $n has $r;"
  done
done < <(printf '%s\n' "$info" | sed -n 's/^args="\(.*\)"$/\1/p')
if [ "$n" = 0 ]; then echo "grubby --info=ALL lists no entries" >&2; exit 1; fi
if [ -n "$bad" ]; then
  echo "boot entries:$bad" >&2
  exit 1
fi

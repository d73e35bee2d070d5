set -eu
f=/etc/sudoers
[ -f "$f" ] || { echo "no $f (the vendor default in /usr/etc applies)"; exit 0; }
tmp=$(mktemp /etc/.sudoers.imageprep.XXXXXX)
trap 'rm -f "$tmp"' EXIT
awk '/^[[:space:]]*Defaults[[:space:]]+targetpw[[:space:]]*(#.*)?$/ ||
     /^[[:space:]]*ALL[[:space:]]+ALL[[:space:]]*=[[:space:]]*\(ALL\)[[:space:]]+ALL[[:space:]]*(#.*)?$/ {
       print "#imageprep-azure-ready: " $0; next } { print }' "$f" > "$tmp"
if cmp -s "$tmp" "$f"; then echo "unchanged: $f"; exit 0; fi
chown root:root "$tmp"
chmod 0440 "$tmp"
if ! visudo -c -q -f "$tmp" >/dev/null; then
  echo "the edited copy of $f does not pass visudo -c; left unchanged" >&2
  exit 1
fi
mv -f "$tmp" "$f"
echo "updated: $f"

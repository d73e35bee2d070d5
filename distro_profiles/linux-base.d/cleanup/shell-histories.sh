set -eu
{
  echo /root
  for h in /home/*; do if [ -d "$h" ]; then echo "$h"; fi; done
  getent passwd | awk -F: '$3 >= 1000 && $3 < 65534 { print $6 }'
} | sort -u | while IFS= read -r home; do
  [ -d "$home" ] || continue
  for f in {{ vars.history_files }}; do
    rm -f -- "$home/$f"
  done
done

set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
left=""
for f in "/var/spool/cron/crontabs/$user" "/var/spool/cron/$user" "/var/spool/cron/tabs/$user" \
         "/var/spool/mail/$user" "/var/mail/$user" "/var/lib/systemd/linger/$user"; do
  if [ -e "$f" ]; then left="$left $f"; fi
done
if [ -n "$left" ]; then echo "spools or linger flag of $user left:$left" >&2; exit 1; fi

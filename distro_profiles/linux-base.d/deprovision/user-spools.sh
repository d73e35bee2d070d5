set -eu
user={{ vars.deprovision_user }}
[ -n "$user" ] || user={{ facts.ovf_user }}
# waagent deletes the user with `userdel -f -r` (azurelinuxagent/common/osutil/
# default.py del_account), and -r also removes the mail spool (shadow userdel(8));
# cron spools stay (virt-sysprep user-account removes both). Debian/Ubuntu,
# RHEL and SUSE keep them in different places.
# systemd-logind's linger flag is a file named after the user, which userdel leaves: a
# clone's new user of that name (azureuser, provisioned again) would get a user manager
# started at every boot (loginctl(1) enable-linger; logind reads /var/lib/systemd/linger).
rm -f -- "/var/spool/cron/crontabs/$user" "/var/spool/cron/$user" "/var/spool/cron/tabs/$user" \
  "/var/spool/mail/$user" "/var/mail/$user" "/var/lib/systemd/linger/$user"

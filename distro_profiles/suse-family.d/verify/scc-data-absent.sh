set -eu
if [ -e /etc/zypp/credentials.d/SCCcredentials ]; then
  echo "/etc/zypp/credentials.d/SCCcredentials is still there" >&2
  exit 1
fi
# registercloudguest pins the update server in /etc/hosts (registerutils.py
# add_hosts_entry); a clone would keep using it.
if grep -q 'susecloud\.net' /etc/hosts 2>/dev/null; then
  echo "/etc/hosts still names SUSE's update server (susecloud.net)" >&2
  exit 1
fi

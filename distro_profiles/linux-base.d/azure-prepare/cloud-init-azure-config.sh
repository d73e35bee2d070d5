set -eu
# Lowercase keys: `Reporting:` (the RHEL page's spelling) is silently ignored by
# cloud-init, and `cloud-init schema` does not catch it (linux.md (c) 15). The
# #cloud-config header lets `cloud-init schema --config-file` check the files.
put() {  # put PATH MODE < content: root:root, MODE; replaced only when it differs
  local tmp
  mkdir -p "$(dirname "$1")"
  tmp=$(mktemp "$1.imageprep.XXXXXX")
  cat > "$tmp"
  chown root:root "$tmp"
  chmod "$2" "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; echo "unchanged: $1"
  else mv -f "$tmp" "$1"; echo "written: $1"; fi
}
d=/etc/cloud/cloud.cfg.d
apply_network={{ vars.cloud_init_apply_network_config }}
put "$d/91-azure_datasource.cfg" 0644 <<EOF
#cloud-config
# Written by imageprep (azure-ready): use only the Azure datasource.
datasource_list: [ Azure ]
datasource:
  Azure:
    apply_network_config: $apply_network
EOF
put "$d/10-azure-kvp.cfg" 0644 <<'EOF'
#cloud-config
# Written by imageprep (azure-ready): report provisioning through Hyper-V KVP.
reporting:
  logging:
    type: log
  telemetry:
    type: hyperv
EOF

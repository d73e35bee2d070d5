set -eu
# cloud-init schema accepts unknown top-level keys, so it cannot catch this.
hits=$(grep -EHn '^[[:space:]]*[A-Za-z_]*[A-Z][A-Za-z_]*:' \
         /etc/cloud/cloud.cfg.d/91-azure_datasource.cfg /etc/cloud/cloud.cfg.d/10-azure-kvp.cfg \
       | grep -v ':[[:space:]]*Azure:' | tr '\n' ' ' || true)
if [ -n "$hits" ]; then
  echo "keys with capitals (cloud-init ignores them): $hits" >&2
  exit 1
fi

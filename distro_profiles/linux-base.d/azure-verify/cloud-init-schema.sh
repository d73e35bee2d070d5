set -eu
# The files hold base-configuration keys (datasource_list, datasource, reporting)
# that `cloud-init schema --config-file` checks as user-data: 23.4 and later
# reject them ("Additional properties are not allowed ('datasource',
# 'datasource_list' were unexpected)"). So those keys are checked here by parsing
# them with cloud-init's own Python and PyYAML, and only what is left (keys shaped
# like user-data, if any) goes through `cloud-init schema`.
# `cloud-init schema` since 22.2; `cloud-init devel schema` before (Debian 11).
if cloud-init schema --help >/dev/null 2>&1; then cmd=(cloud-init schema)
else cmd=(cloud-init devel schema); fi
# cloud-init's interpreter (RHEL 8: platform-python; there may be no python3).
py=$(sed -n '1s/^#![[:space:]]*//p' "$(command -v cloud-init)")
for f in /etc/cloud/cloud.cfg.d/91-azure_datasource.cfg /etc/cloud/cloud.cfg.d/10-azure-kvp.cfg; do
  if [ ! -f "$f" ]; then echo "$f is missing" >&2; exit 1; fi
  # Prints the user-data-shaped rest (nothing when there is none).
  rest=$($py - "$f" <<'PY'
import sys
import yaml
path = sys.argv[1]
try:
    cfg = yaml.safe_load(open(path)) or {}
except yaml.YAMLError as exc:
    sys.exit(f"{path}: not valid YAML: {exc}")
if not isinstance(cfg, dict):
    sys.exit(f"{path}: not a mapping")
bad = []
if "datasource_list" in cfg:
    dl = cfg.pop("datasource_list")
    if not (isinstance(dl, list) and dl and all(isinstance(d, str) for d in dl)):
        bad.append(f"datasource_list is not a list of names: {dl!r}")
if "datasource" in cfg:
    ds = cfg.pop("datasource")
    if not isinstance(ds, dict) or not all(isinstance(v, dict) for v in ds.values()):
        bad.append(f"datasource is not a mapping of datasource settings: {ds!r}")
    else:
        anc = ds.get("Azure", {}).get("apply_network_config", True)
        if not isinstance(anc, bool):
            bad.append(f"datasource.Azure.apply_network_config is not a boolean: {anc!r}")
if "reporting" in cfg:
    rep = cfg.pop("reporting")
    types = {"log", "print", "webhook", "hyperv"}
    if not isinstance(rep, dict) or not all(
        isinstance(v, dict) and v.get("type") in types for v in rep.values()
    ):
        bad.append(f"reporting handlers need a type out of {sorted(types)}: {rep!r}")
if bad:
    sys.exit(f"{path}: " + "; ".join(bad))
if cfg:
    print("#cloud-config\n" + yaml.safe_dump(cfg), end="")
PY
  )
  if [ -n "$rest" ]; then "${cmd[@]}" --config-file <(printf '%s\n' "$rest"); fi
done

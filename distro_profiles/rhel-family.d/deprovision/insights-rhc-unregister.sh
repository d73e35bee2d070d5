set -eu
# Before subscription-cleanup: `rhc disconnect` also unregisters from RHSM.
# rhc status prints "Connected to ..." or "Not connected to ..." per service
# (rhc(1)); insights-client keeps /etc/insights-client/.registered while the
# host is registered and --unregister removes it (insights-client(8)).
if command -v rhc >/dev/null 2>&1 && rhc status 2>/dev/null | grep -q '^[^N]*Connected to'; then
  rhc disconnect
fi
if command -v insights-client >/dev/null 2>&1 && [ -e /etc/insights-client/.registered ]; then
  insights-client --unregister
fi

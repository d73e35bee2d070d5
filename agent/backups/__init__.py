"""Backup providers: one module per scheme, found through ``provider_from_spec``."""

from agent.backups.base import (
    BackupContext,
    BackupProvider,
    BackupRecord,
    provider_from_spec,
)

__all__ = ["BackupContext", "BackupProvider", "BackupRecord", "provider_from_spec"]

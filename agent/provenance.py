"""What a resource imageprep made in the cloud says about the run that made it.

Snapshots (``--backup azure-snapshot:``), gallery image versions and managed images
(``--capture``) carry tags that lead back to the run folder: the run id, and for an
image the profile, the playbook and the SHA-256 of the generalization's record.

That record is ``result.json`` as it stood when the capture began (the generalization
finished and verified, the power-off confirmed), frozen once per run as
:data:`EVIDENCE_FILE` beside it: result.json itself goes on changing (the capture is
recorded in it), so it could not be what the tag's hash checks. ``sha256sum
result.before-capture.json`` in the run folder equals the image's
``imageprep-result-sha256`` tag. A resumed capture reuses the frozen file, so every
attempt tags the same hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

TAG_RUN_ID = "imageprep-run-id"
TAG_PROFILE = "imageprep-profile"
TAG_PLAYBOOK = "imageprep-playbook"
TAG_RESULT_SHA256 = "imageprep-result-sha256"

# A disk `imageprep upload` created: "incomplete" from its creation until the upload was
# revoked and checked, then "complete"; with the SHA-256 of the VHD written into it. A
# re-run reads both to tell its own unfinished upload from someone else's disk.
TAG_UPLOAD = "imageprep-upload"
TAG_UPLOAD_SHA256 = "imageprep-upload-sha256"
UPLOAD_INCOMPLETE = "incomplete"
UPLOAD_COMPLETE = "complete"

EVIDENCE_FILE = "result.before-capture.json"


def freeze_evidence(result_file: Path) -> str:
    """Freeze ``result_file`` beside itself as :data:`EVIDENCE_FILE` (once); its SHA-256."""
    evidence = result_file.with_name(EVIDENCE_FILE)
    if not evidence.is_file():
        data = result_file.read_bytes()
        partial = evidence.with_name(f".{EVIDENCE_FILE}.partial")
        partial.write_bytes(data)
        # Complete or absent: a run killed mid-copy freezes again on resume.
        os.replace(partial, evidence)
    return hashlib.sha256(evidence.read_bytes()).hexdigest()

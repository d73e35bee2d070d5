"""A fake of Azure Resource Manager (ARM), for tests only.

No Azure is reachable where imageprep's tests run. The ``azure-snapshot:`` provider's
real client (azure-mgmt-compute, with its azure-core HTTP pipeline, bearer-token policy
and long-running-operation poller) talks real HTTPS on 127.0.0.1 to this server, which
answers the few ARM endpoints the provider uses, shaped after the ARM REST reference
(Microsoft.Compute virtualMachines and snapshots, "Track asynchronous Azure operations"):

    GET  .../resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM
    PUT  .../resourceGroups/RG/providers/Microsoft.Compute/snapshots/NAME
         -> 202 Accepted + Azure-AsyncOperation and Location headers
    GET  /subscriptions/SUB/providers/Microsoft.Compute/locations/LOC/DiskOperations/ID
    GET  .../resourceGroups/RG/providers/Microsoft.Compute/snapshots/NAME

and, for ``imageprep upload``, disks created for upload (PUT with tags, PATCH of tags,
DELETE refused while attached or under a SAS), beginGetAccess/endGetAccess and a page-blob
endpoint that records each Put Page. Whether write access is granted again to a disk in
ActiveUpload is a named switch, ``FakeArm(regrant_active_upload=...)`` (see server.py). All
with ARM's error bodies (401 InvalidAuthenticationToken, 403 AuthorizationFailed, 404
ResourceNotFound / ResourceGroupNotFound, 400 for a bad body). It proves the provider and
the SDK work together over the wire; it does not prove Azure behaves like it.
:class:`FakeTokenCredential` stands in for azure-identity and hands out fixed tokens.
"""

from tests.arm_fake.server import FakeArm, FakeTokenCredential, Principal

__all__ = ["FakeArm", "FakeTokenCredential", "Principal"]

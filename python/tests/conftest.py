# Fixtures of the package's own tests (run from an installed wheel, never from the source tree).
import os

import pytest

NS, HUB, GROUP = "myns.servicebus.windows.net", "telemetry", "$Default"


@pytest.fixture
def db(tmp_path):
    return os.path.join(tmp_path, "checkpoints.db")


def ownership(pid, owner="p1", etag=None, ns=NS, hub=HUB, group=GROUP):
    d = {
        "fully_qualified_namespace": ns,
        "eventhub_name": hub,
        "consumer_group": group,
        "partition_id": pid,
        "owner_id": owner,
    }
    if etag is not None:
        d["etag"] = etag
    return d


def checkpoint(pid, offset="100", seq=10, ns=NS, hub=HUB, group=GROUP):
    return {
        "fully_qualified_namespace": ns,
        "eventhub_name": hub,
        "consumer_group": group,
        "partition_id": pid,
        "offset": offset,
        "sequence_number": seq,
    }
